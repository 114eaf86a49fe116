//! Fault schedules (`at`, `every`, `rate`), expanded into times, and the choice of kind and
//! worker at injection time.

use std::time::Duration;

use super::{FaultError, Kind};
use crate::browser::BrowserKind;
use crate::rng::Seeded as Rng;

/// Which kind a fault is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Always this kind.
    One(Kind),
    /// One of these, drawn with the fault's seed among those that fit some target worker.
    Random(Vec<Kind>),
}

/// When a fault fires, counted from the start of the measured workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// Once.
    At(Duration),
    /// Periodically, first after one period.
    Every(Duration),
    /// At Poisson times, this many per minute on average.
    Rate(f64),
}

/// Which worker a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any worker, drawn with the seed.
    Random,
    /// A worker of this kind.
    Browser(BrowserKind),
    /// The worker with this id.
    Worker(String),
    /// A worker hosting this model.
    Model(String),
    /// The worker serving this shard of the pipeline.
    Shard(u32),
}

/// One fault as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// The kind, or the kinds to draw from.
    pub choice: Choice,
    /// The schedule.
    pub when: When,
    /// At most this many occurrences.
    pub count: Option<u32>,
    /// Seed for times, kinds and targets.
    pub seed: u64,
    /// Target.
    pub target: Target,
    /// How long a hang, disconnect or slowdown lasts.
    pub duration: Duration,
    /// `slow`: delay added to each run.
    pub delay: Duration,
}

/// One occurrence of a fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Index of its spec.
    pub spec: usize,
    /// When, from the start of the measured workload.
    pub at: Duration,
    /// Seed for this occurrence's kind and target.
    pub seed: u64,
}

/// What the chooser may know about a live worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    /// Worker id, e.g. `chromium#1`.
    pub id: String,
    /// Browser kind.
    pub browser: BrowserKind,
    /// Whether a WebDriver server process drives it.
    pub has_driver: bool,
    /// Whether its browser's pid is known here (not for a remote Grid worker).
    pub has_pid: bool,
    /// Whether a model runs on WebGPU there.
    pub runs_webgpu: bool,
    /// Models loaded there.
    pub models: Vec<String>,
    /// The pipeline shards it serves.
    pub shards: Vec<u32>,
}

/// Every occurrence of `specs` before `horizon` (the run's measured duration; `None` for a run
/// bounded by iterations, where periodic faults stop after 1000 occurrences), in time order.
pub fn plan(specs: &[FaultSpec], horizon: Option<Duration>) -> Vec<Planned> {
    const UNBOUNDED: u32 = 1000;
    let mut out = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let mut rng = Rng::new(s.seed);
        let limit = s.count.unwrap_or(UNBOUNDED).min(UNBOUNDED);
        let inside = |t: Duration| horizon.is_none_or(|h| t < h);
        let mut push = |at: Duration, rng: &mut Rng| {
            out.push(Planned {
                spec: i,
                at,
                seed: rng.next_u64(),
            })
        };
        match s.when {
            When::At(t) if inside(t) => push(t, &mut rng),
            When::Every(period) if !period.is_zero() => {
                let mut t = period;
                for _ in 0..limit {
                    if !inside(t) {
                        break;
                    }
                    push(t, &mut rng);
                    t += period;
                }
            }
            When::Rate(per_min) if per_min > 0.0 && per_min.is_finite() => {
                let mean_s = 60.0 / per_min;
                let mut t = 0.0f64;
                for _ in 0..limit {
                    // Exponential gaps: -ln(U) * mean, U in (0, 1].
                    t += -(1.0 - rng.unit()).ln() * mean_s;
                    let at = Duration::from_secs_f64(t);
                    if !inside(at) {
                        break;
                    }
                    push(at, &mut rng);
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|p| (p.at, p.spec));
    out
}

/// The kind and worker for one occurrence, given the live workers.
///
/// # Errors
/// [`FaultError`] saying why no live worker fits (the occurrence is then skipped).
pub fn choose(
    spec: &FaultSpec,
    seed: u64,
    workers: &[WorkerView],
) -> Result<(Kind, String), FaultError> {
    let mut rng = Rng::new(seed);
    let targets: Vec<&WorkerView> = workers
        .iter()
        .filter(|w| match &spec.target {
            Target::Random => true,
            Target::Browser(b) => w.browser == *b,
            Target::Worker(id) => &w.id == id,
            Target::Model(m) => w.models.iter().any(|x| x == m),
            Target::Shard(k) => w.shards.contains(k),
        })
        .collect();
    if targets.is_empty() {
        return Err(FaultError::NoTarget {
            target: spec.target.clone(),
        });
    }
    let kind = match &spec.choice {
        Choice::One(k) => *k,
        Choice::Random(kinds) => {
            let pool: &[Kind] = if kinds.is_empty() {
                &Kind::RANDOM_POOL
            } else {
                kinds
            };
            let usable: Vec<Kind> = pool
                .iter()
                .copied()
                .filter(|k| targets.iter().any(|w| k.fits(w)))
                .collect();
            if usable.is_empty() {
                return Err(FaultError::NoKindFits);
            }
            usable[rng.below(usable.len())]
        }
    };
    let fitting: Vec<&&WorkerView> = targets.iter().filter(|w| kind.fits(w)).collect();
    if fitting.is_empty() {
        return Err(FaultError::NoWorkerFits { kind });
    }
    Ok((kind, fitting[rng.below(fitting.len())].id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(choice: Choice, when: When) -> FaultSpec {
        FaultSpec {
            choice,
            when,
            count: None,
            seed: 9,
            target: Target::Random,
            duration: Duration::from_secs(5),
            delay: Duration::from_millis(250),
        }
    }

    fn worker(id: &str, browser: BrowserKind, driver: bool) -> WorkerView {
        WorkerView {
            id: id.into(),
            browser,
            has_driver: driver,
            has_pid: true,
            runs_webgpu: false,
            models: vec!["bert".into()],
            shards: Vec::new(),
        }
    }

    #[test]
    fn every_and_at_and_count() {
        let s = spec(
            Choice::One(Kind::Hang),
            When::Every(Duration::from_secs(15)),
        );
        let p = plan(std::slice::from_ref(&s), Some(Duration::from_secs(120)));
        let at: Vec<u64> = p.iter().map(|p| p.at.as_secs()).collect();
        assert_eq!(at, [15, 30, 45, 60, 75, 90, 105]);
        let mut limited = s;
        limited.count = Some(2);
        assert_eq!(plan(&[limited], Some(Duration::from_secs(120))).len(), 2);
        let once = spec(
            Choice::One(Kind::KillBrowser),
            When::At(Duration::from_secs(200)),
        );
        assert!(plan(&[once], Some(Duration::from_secs(120))).is_empty());
    }

    #[test]
    fn rate_is_seeded_and_near_its_mean() {
        let s = spec(Choice::One(Kind::Slow), When::Rate(6.0));
        let h = Some(Duration::from_secs(3600));
        let a = plan(std::slice::from_ref(&s), h);
        assert_eq!(a, plan(&[s], h), "same seed, same times");
        // 6 per minute for an hour: 360 expected; Poisson sd is 19.
        assert!((280..440).contains(&a.len()), "{}", a.len());
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn choose_respects_fit_and_target() {
        let ws = vec![
            worker("chromium#1", BrowserKind::Chromium, false),
            worker("firefox#1", BrowserKind::Firefox, true),
        ];
        let s = spec(Choice::One(Kind::KillDriver), When::At(Duration::ZERO));
        for seed in 0..20 {
            assert_eq!(choose(&s, seed, &ws).unwrap().1, "firefox#1");
        }
        let mut gpu = spec(Choice::One(Kind::GpuDeviceLost), When::At(Duration::ZERO));
        let none = choose(&gpu, 1, &ws).unwrap_err();
        assert_eq!(
            none,
            FaultError::NoWorkerFits {
                kind: Kind::GpuDeviceLost
            }
        );
        assert!(none.to_string().contains("WebGPU"), "{none}");
        gpu.choice = Choice::Random(vec![Kind::GpuDeviceLost, Kind::Hang]);
        assert_eq!(choose(&gpu, 1, &ws).unwrap().0, Kind::Hang);
        let mut by_model = spec(Choice::One(Kind::Hang), When::At(Duration::ZERO));
        by_model.target = Target::Model("whisper".into());
        assert!(matches!(
            choose(&by_model, 1, &ws),
            Err(FaultError::NoTarget { .. })
        ));
        by_model.target = Target::Browser(BrowserKind::Chromium);
        assert_eq!(choose(&by_model, 3, &ws).unwrap().1, "chromium#1");
    }

    #[test]
    fn a_shard_target_hits_the_worker_serving_that_shard() {
        let mut a = worker("chromium#1", BrowserKind::Chromium, false);
        let mut b = worker("firefox#1", BrowserKind::Firefox, true);
        a.shards = vec![0, 2];
        b.shards = vec![1];
        let mut spec = spec(Choice::One(Kind::KillBrowser), When::At(Duration::ZERO));
        spec.target = Target::Shard(1);
        let (_, hit) = choose(&spec, 7, &[a.clone(), b]).expect("a worker serves shard 1");
        assert_eq!(hit, "firefox#1");
        spec.target = Target::Shard(3);
        assert!(choose(&spec, 7, &[a]).is_err(), "no worker serves shard 3");
    }

    #[test]
    fn random_kinds_cover_the_list() {
        let ws = vec![
            worker("chromium#1", BrowserKind::Chromium, false),
            worker("firefox#1", BrowserKind::Firefox, true),
        ];
        let s = spec(Choice::Random(Vec::new()), When::At(Duration::ZERO));
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            seen.insert(choose(&s, seed, &ws).unwrap().0);
        }
        // Every kind but gpu_device_lost (no WebGPU model here).
        assert_eq!(seen.len(), Kind::RANDOM_POOL.len() - 1);
    }

    #[test]
    fn a_remote_worker_takes_no_pid_fault_and_says_why() {
        let mut remote = worker("firefox#1", BrowserKind::Firefox, false);
        remote.has_pid = false;
        let kill = spec(Choice::One(Kind::KillBrowser), When::At(Duration::ZERO));
        let err = choose(&kill, 1, std::slice::from_ref(&remote)).unwrap_err();
        assert!(err.to_string().contains("browser pid"), "{err}");
        // A remote Firefox cannot have its tab crashed through WebDriver; a remote Chromium can.
        let crash = spec(Choice::One(Kind::CrashTab), When::At(Duration::ZERO));
        assert!(choose(&crash, 1, std::slice::from_ref(&remote)).is_err());
        let mut chromium = worker("chromium#1", BrowserKind::Chromium, false);
        chromium.has_pid = false;
        assert_eq!(
            choose(&crash, 1, &[remote.clone(), chromium]).unwrap().1,
            "chromium#1"
        );
        // Random faults on a remote worker draw only from what fits it.
        let random = spec(Choice::Random(Vec::new()), When::At(Duration::ZERO));
        for seed in 0..50 {
            let (kind, _) = choose(&random, seed, std::slice::from_ref(&remote)).unwrap();
            assert!(
                !matches!(kind, Kind::KillBrowser | Kind::KillDriver | Kind::CrashTab),
                "{kind}"
            );
        }
    }
}
