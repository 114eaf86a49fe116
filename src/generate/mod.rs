//! Text generation with a decoder whose key/value cache stays where it was computed: the token
//! loop, its choices (greedy, or sampled from a seed), and the native reference
//! ([`native::NativeDecoder`]). Must not import `report` or `cli`.

pub mod check;
pub mod choose;
pub mod model;
pub mod native;

/// The index of the largest logit (the first of equals), the greedy choice.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The largest logit's lead over the second largest: a lead within the verification tolerance
/// is a near tie, where two correct implementations may choose differently.
pub fn top_two_gap(logits: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in logits {
        if v > a {
            b = a;
            a = v;
        } else if v > b {
            b = v;
        }
    }
    a - b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equals() {
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 3.0]), 1);
        assert_eq!(argmax(&[-5.0]), 0);
        assert_eq!(top_two_gap(&[1.0, 4.0, 3.5]), 0.5);
    }
}
