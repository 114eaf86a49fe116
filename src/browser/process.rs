//! Process utilities over `/proc` and `kill(2)`: liveness, signals, process trees and memory.
//!
//! Inputs: pids of browser and driver processes this crate started. Outputs: liveness answers,
//! child/descendant lists, and proportional set size (PSS) totals for memory metrics.
//! Linux only (reads `/proc`). Must not import `report`, `cli` or terminal crates.
//!
//! Why `/proc` and not a process-listing crate: the few fields needed (state, ppid, start time,
//! `Pss:`) are one line each, and a crate would be another dependency for the whole pool.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;

/// A signal this crate sends to processes it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `SIGTERM`: ask to exit.
    Term,
    /// `SIGKILL`: end now (the fault injector's "kill browser").
    Kill,
    /// `SIGSTOP`: freeze (a hung browser).
    Stop,
    /// `SIGCONT`: resume after [`Signal::Stop`].
    Cont,
}

impl Signal {
    fn as_raw(self) -> libc::c_int {
        match self {
            Self::Term => libc::SIGTERM,
            Self::Kill => libc::SIGKILL,
            Self::Stop => libc::SIGSTOP,
            Self::Cont => libc::SIGCONT,
        }
    }
}

/// The fields of `/proc/<pid>/stat` this module uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    /// One-letter state: `R`, `S`, `D`, `Z` (zombie), `X` (dead), `T` (stopped), ...
    state: char,
    /// Parent pid.
    ppid: u32,
}

/// Parses `/proc/<pid>/stat`. The command name sits in parentheses and may itself contain
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid })
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `pid` names a running process. A zombie (exited, not yet reaped) counts as dead:
/// `kill(pid, 0)` alone would still call it alive.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let rc = unsafe { libc::kill(raw, 0) };
    let exists = rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists
        && !matches!(
            read_stat(pid),
            Some(Stat {
                state: 'Z' | 'X',
                ..
            })
        )
}

/// Sends `signal` to `pid`.
///
/// # Errors
/// The OS error from `kill(2)`, e.g. `ESRCH` when the process is already gone. A pid of 0 or one
/// that does not fit `pid_t` is refused with `InvalidInput` (0 would signal our process group).
pub fn kill(pid: u32, signal: Signal) -> io::Result<()> {
    let raw = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad pid {pid}")))?;
    // SAFETY: plain syscall on a positive pid; no memory is shared.
    if unsafe { libc::kill(raw, signal.as_raw()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One snapshot of `pid -> ppid` for every process in `/proc`.
fn parent_map() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = read_stat(pid) {
            if !matches!(stat.state, 'Z' | 'X') {
                map.insert(pid, stat.ppid);
            }
        }
    }
    map
}

/// The live (non-zombie) direct children of `pid`, in ascending pid order.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out: Vec<u32> = parent_map()
        .into_iter()
        .filter(|&(_, ppid)| ppid == pid)
        .map(|(child, _)| child)
        .collect();
    out.sort_unstable();
    out
}

/// Every live descendant of `pid` (children, grandchildren, ...), breadth first; `pid` itself
/// is not included.
pub fn descendants_of(pid: u32) -> Vec<u32> {
    let map = parent_map();
    let mut kids: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&child, &ppid) in &map {
        kids.entry(ppid).or_default().push(child);
    }
    for list in kids.values_mut() {
        list.sort_unstable();
    }
    let mut out = Vec::new();
    let mut queue = VecDeque::from([pid]);
    while let Some(p) = queue.pop_front() {
        for &c in kids.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            // A cycle is impossible in a consistent snapshot; the check keeps a torn read finite.
            if c != pid && !out.contains(&c) {
                out.push(c);
                queue.push_back(c);
            }
        }
    }
    out
}

/// The command line of `pid`, split into words at NULs and spaces (`None` when it is gone).
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        // Chromium's zygote children rewrite their argv into one space-separated string.
        raw.split(|&b| b == 0 || b == b' ')
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// `pid` followed by all its live descendants.
pub fn tree_of(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    all.extend(descendants_of(pid));
    all
}

/// Live processes whose command line or environment contains `dir` (as a path string).
///
/// Chromium's crashpad handlers double-fork and re-parent to init, so they are not in the
/// browser's tree; but they carry the launch's private `--user-data-dir` / `TMPDIR`, which no
/// other process has. Close uses this sweep so nothing of a launch outlives it.
pub fn mentioning(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    if needle.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pid_alive(pid))
        .filter(|&pid| {
            ["cmdline", "environ"].iter().any(|f| {
                std::fs::read(format!("/proc/{pid}/{f}"))
                    .map(|b| b.windows(needle.len()).any(|w| w == needle))
                    .unwrap_or(false)
            })
        })
        .collect()
}

/// Sends `signal` to `pid` and every descendant found in one snapshot taken *before* the first
/// signal (once a parent dies its children are re-parented and no longer found under it).
/// Returns the pids that were signalled. Errors for processes already gone are ignored.
pub fn kill_tree(pid: u32, signal: Signal) -> Vec<u32> {
    let tree = tree_of(pid);
    tree.iter()
        .copied()
        .filter(|&p| kill(p, signal).is_ok())
        .collect()
}

/// SIGKILLs every pid in `pids` that is still alive, again and again, until none is or `bound`
/// passes. The caller snapshots `pids` (with [`tree_of`]) before the first signal.
///
/// # Errors
/// The pids still alive when `bound` passed.
pub async fn kill_until_dead(pids: &[u32], bound: std::time::Duration) -> Result<(), Vec<u32>> {
    let deadline = std::time::Instant::now() + bound;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
        if alive.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(alive);
        }
        for &p in &alive {
            let _ = kill(p, Signal::Kill);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Clock ticks per second of `/proc` counters.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a configuration value; it touches no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of one process from its `stat` file's text, in clock ticks. The fields after
/// the `)` that closes the command name (which may hold spaces) start at field 3, so utime (14)
/// and stime (15) are the 12th and 13th there.
fn parse_cpu_ticks(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
}

/// CPU time (user + system) of `pid`, every thread, s; `None` when it is gone. `pid` may be
/// `self`. Read from the process's CPU-time clock (`clock_getcpuclockid`), which counts in
/// nanoseconds: `/proc/<pid>/stat` counts in clock ticks (10 ms here), too coarse for a cell
/// whose measured runs take a few ms (a 9 ms window read 0 cores). `/proc` is the fallback.
pub fn cpu_s(pid: &str) -> Option<f64> {
    let n: libc::pid_t = if pid == "self" { 0 } else { pid.parse().ok()? };
    cpu_clock_s(n).or_else(|| {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(parse_cpu_ticks(&stat)? / clock_ticks())
    })
}

/// The CPU-time clock of process `pid` (0: this one), s.
fn cpu_clock_s(pid: libc::pid_t) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls only write the out-parameters we pass, which live on this stack.
    let ok = unsafe {
        libc::clock_getcpuclockid(pid, &mut clock) == 0 && libc::clock_gettime(clock, &mut ts) == 0
    };
    ok.then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// CPU time of `pids` and every live descendant of each (a browser's renderer, GPU and utility
/// processes), s. The same `/proc` reading as memory ([`tree_pss_kib`]); a process that exited
/// since the last reading takes its time with it, so a difference of two readings is a lower
/// bound.
pub fn trees_cpu_s(pids: &[u32]) -> f64 {
    pids.iter()
        .flat_map(|&p| tree_of(p))
        .filter_map(|p| cpu_s(&p.to_string()))
        .sum()
}

/// Parses the `Pss:` line of `/proc/<pid>/smaps_rollup` (kibibytes).
fn parse_pss(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Sum of the proportional set size of `pids`, in KiB, from `/proc/<pid>/smaps_rollup`.
/// Pids that are gone or unreadable count as 0, so the sum is a lower bound; `None` when none
/// could be read at all.
pub fn pss_kib(pids: &[u32]) -> Option<u64> {
    let readings: Vec<u64> = pids
        .iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|t| parse_pss(&t))
        .collect();
    (!readings.is_empty()).then(|| readings.iter().sum())
}

/// PSS of `pid` and all its descendants (a browser's GPU, renderer and utility processes).
pub fn tree_pss_kib(pid: u32) -> Option<u64> {
    pss_kib(&tree_of(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_finer_than_a_clock_tick() {
        // A few ms of work on this thread: the /proc tick (10 ms) would often read 0.
        let pid = std::process::id().to_string();
        let before = cpu_s(&pid).unwrap();
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(3) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let spent = cpu_s(&pid).unwrap() - before;
        assert!(spent > 0.0, "{spent}");
        assert!(cpu_s("self").is_some());
        assert!(cpu_s("999999999").is_none());
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime_after_the_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 10 0 0 0 250 75 0 0 20 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325.0));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn stat_with_spaces_and_parens_in_name() {
        let s = "1234 (Web Content (x)) S 99 1234 1234 0 -1 4194560 0 0";
        assert_eq!(
            parse_stat(s),
            Some(Stat {
                state: 'S',
                ppid: 99
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn mentioning_finds_a_child_by_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("WGP_MARK", dir.path())
            .spawn()
            .unwrap();
        // Right after spawn the child may not have exec'd yet (its environ is still ours):
        // look again for a moment.
        let mut found = mentioning(dir.path());
        for _ in 0..100 {
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            found = mentioning(dir.path());
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![child.id()]);
    }

    #[test]
    fn pss_line() {
        let t = "00400000-7fff [rollup]\nRss:  2048 kB\nPss:  1536 kB\nPss_Anon: 10 kB\n";
        assert_eq!(parse_pss(t), Some(1536));
    }

    #[test]
    fn own_process_is_alive_and_measurable() {
        let me = std::process::id();
        assert!(pid_alive(me));
        assert!(pss_kib(&[me]).unwrap_or(0) > 0);
        assert!(!pid_alive(0));
        assert!(kill(0, Signal::Term).is_err());
    }

    #[test]
    fn child_is_found_and_killed() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(children_of(std::process::id()).contains(&pid));
        assert!(descendants_of(std::process::id()).contains(&pid));
        kill(pid, Signal::Kill).unwrap();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
