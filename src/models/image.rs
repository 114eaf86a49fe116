//! A deterministic synthetic picture for the vision models, ImageNet-normalised.
//!
//! The picture has colour gradients, a filled disc, a rectangle and a checker patch, so
//! activations are not degenerate. Input: the side in pixels. Output: `[1, 3, side, side]`
//! f32 values in CHW order. Must not import `cli` or `report`.

/// ImageNet per-channel mean.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet per-channel standard deviation.
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The RGB value in `[0, 1]` of pixel (x, y) of a `side`-pixel picture.
fn pixel(x: usize, y: usize, side: usize) -> [f32; 3] {
    let s = side as f32;
    let (fx, fy) = (x as f32 / s, y as f32 / s);
    let mut rgb = [fx, fy, 1.0 - 0.5 * (fx + fy)];
    let (cx, cy, r) = (0.35 * s, 0.4 * s, 0.2 * s);
    let (dx, dy) = (x as f32 - cx, y as f32 - cy);
    if dx * dx + dy * dy <= r * r {
        rgb = [0.9, 0.2, 0.1];
    }
    if fx > 0.6 && fx < 0.9 && fy > 0.55 && fy < 0.8 {
        rgb = [0.1, 0.7, 0.3];
    }
    if fx < 0.25 && fy > 0.75 && ((x / 8 + y / 8) % 2 == 0) {
        rgb = [1.0, 1.0, 1.0];
    }
    rgb
}

/// The normalised picture as `[1, 3, side, side]` row-major values.
pub fn picture(side: usize) -> Vec<f32> {
    let mut out = vec![0.0; 3 * side * side];
    for y in 0..side {
        for x in 0..side {
            let rgb = pixel(x, y, side);
            for c in 0..3 {
                out[c * side * side + y * side + x] = (rgb[c] - MEAN[c]) / STD[c];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_shape_and_range() {
        let p = picture(224);
        assert_eq!(p.len(), 3 * 224 * 224);
        assert!(p.iter().all(|v| v.is_finite() && v.abs() < 3.0));
        assert_eq!(p, picture(224));
    }
}
