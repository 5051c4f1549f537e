//! Rust-only benchmark of the core port: the workloads of `benchmark/` in
//! the Node.js package, run on the same `CompletionPort` and worker thread
//! but with no JavaScript. Its figures are the ceiling for the binding, and
//! the gap to them is the cost of the bridge to JavaScript.
//!
//! The owner thread polls the port after each batch, as `index.js` does on
//! the JavaScript thread, and parks until the worker's `Listener` unparks it
//! when a poll finds nothing. Completions are looked up by registration id in a `HashMap`, as
//! `index.js` looks up callbacks.
//!
//! Usage, from the repository root:
//!
//! ```text
//! cargo run --release -p completion-port-core --example bench -- throughput --fds 1000 --seconds 3
//! cargo run --release -p completion-port-core --example bench -- ping-pong --round-trips 20000
//! cargo run --release -p completion-port-core --example bench -- rss --cycles 1000000
//! ```
//!
//! Each run prints one line of JSON.

use std::collections::HashMap;
use std::env;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use completion_port_core::{Action, Completion, CompletionPort, Listener, RegistrationId};

const EPOLLIN: u32 = 0x001;

/// Time spent before counting starts, so that the figures leave out thread
/// start-up and the first allocations.
const WARM_UP: Duration = Duration::from_millis(300);

/// Fds kept readable by the `rss` workload.
const RSS_FDS: usize = 100;

/// Cycles run by the `rss` workload before the first RSS sample.
const RSS_WARM_UP_CYCLES: u64 = 50_000;

/// Round trips run by `ping-pong` before the first sample.
const PING_PONG_WARM_UP: usize = 2_000;

const USAGE: &str = "usage: bench throughput [--fds N] [--seconds S]
       bench ping-pong [--round-trips N]
       bench rss [--cycles N]";

/// Unparks the owner thread when the worker queued events.
struct Unparker(Thread);

impl Listener for Unparker {
    fn events_queued(&self) {
        self.0.unpark();
    }
}

/// A port served by the current thread.
struct OwnedPort {
    port: CompletionPort,
    batch: Vec<Completion>,
}

impl OwnedPort {
    fn new() -> Self {
        let listener = Arc::new(Unparker(thread::current()));
        let port = CompletionPort::new(listener).expect("failed to create the completion port");
        Self {
            port,
            batch: Vec::new(),
        }
    }

    /// Returns the next batch of completions, as `index.js` gets them: it
    /// polls on this thread first, and parks until the worker queues events
    /// only when a poll finds nothing. A spurious unpark only costs one more
    /// loop.
    fn wait_batch(&mut self) -> Vec<Completion> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        while !self.port.poll_completions(&mut batch) {
            thread::park();
        }
        batch
    }

    /// Keeps `batch`'s allocation for the next `wait_batch`.
    fn recycle(&mut self, batch: Vec<Completion>) {
        self.batch = batch;
    }

    fn add(&mut self, stream: &UnixStream) -> RegistrationId {
        self.port
            .add(stream.as_raw_fd(), EPOLLIN)
            .expect("failed to add a registration")
    }
}

/// Socketpairs whose first end stays readable: one byte is written to the
/// second end and never read.
fn readable_pairs(count: usize) -> Vec<(UnixStream, UnixStream)> {
    (0..count)
        .map(|_| {
            let (reader, mut writer) = UnixStream::pair().expect("failed to create a socketpair");
            writer.write_all(b"x").expect("failed to write one byte");
            (reader, writer)
        })
        .collect()
}

/// Measures completions per second with `fd_count` fds kept readable, every
/// completion re-adding its registration, and returns them as JSON.
fn throughput(fd_count: usize, seconds: f64) -> String {
    let pairs = readable_pairs(fd_count);
    let mut port = OwnedPort::new();
    let mut fd_index_by_id = HashMap::with_capacity(fd_count);
    for (index, (reader, _)) in pairs.iter().enumerate() {
        fd_index_by_id.insert(port.add(reader), index);
    }

    let started = Instant::now();
    let measure_from = started + WARM_UP;
    let deadline = measure_from + Duration::from_secs_f64(seconds);
    let mut counted = 0u64;
    let mut batches = 0u64;
    let mut counting_since = None;
    loop {
        let batch = port.wait_batch();
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if counting_since.is_none() && now >= measure_from {
            counting_since = Some(now);
        }
        for completion in &batch {
            let index = fd_index_by_id
                .remove(&completion.id)
                .expect("every completion has a registration");
            assert_eq!(completion.action, Action::EpollIn);
            fd_index_by_id.insert(port.add(&pairs[index].0), index);
        }
        if counting_since.is_some() {
            counted += batch.len() as u64;
            batches += 1;
        }
        port.recycle(batch);
    }

    let elapsed = counting_since.map_or(0.0, |since| since.elapsed().as_secs_f64());
    format!(
        "{{\"workload\":\"throughput\",\"fds\":{fd_count},\"completions\":{counted},\
         \"batches\":{batches},\"seconds\":{elapsed:.6},\"perSecond\":{:.1}}}",
        counted as f64 / elapsed
    )
}

/// Bounces one byte between the two ends of a socketpair and returns the
/// p50 and p99 round-trip times in microseconds, as JSON.
fn ping_pong(round_trips: usize) -> String {
    let (mut left, mut right) = UnixStream::pair().expect("failed to create a socketpair");
    left.set_nonblocking(true)
        .expect("failed to set O_NONBLOCK");
    right
        .set_nonblocking(true)
        .expect("failed to set O_NONBLOCK");
    let mut port = OwnedPort::new();
    let mut left_id = port.add(&left);
    let mut right_id = port.add(&right);

    let mut completed_round_trips = 0usize;
    let mut samples = Vec::with_capacity(round_trips);
    let mut byte = [0u8; 1];
    let mut sent_at = Instant::now();
    left.write_all(b"x").expect("failed to write one byte");
    while samples.len() < round_trips {
        let batch = port.wait_batch();
        for completion in &batch {
            if completion.id == right_id {
                read_one(&mut right, &mut byte);
                right_id = port.add(&right);
                right.write_all(&byte).expect("failed to write one byte");
            } else if completion.id == left_id {
                read_one(&mut left, &mut byte);
                let now = Instant::now();
                completed_round_trips += 1;
                if completed_round_trips > PING_PONG_WARM_UP {
                    samples.push(now.duration_since(sent_at).as_secs_f64() * 1e6);
                }
                sent_at = now;
                left_id = port.add(&left);
                left.write_all(&byte).expect("failed to write one byte");
            }
        }
        port.recycle(batch);
    }

    samples.sort_by(f64::total_cmp);
    format!(
        "{{\"workload\":\"ping-pong\",\"roundTrips\":{round_trips},\
         \"p50Us\":{:.3},\"p99Us\":{:.3}}}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99)
    )
}

fn read_one(stream: &mut UnixStream, byte: &mut [u8; 1]) {
    match stream.read(byte) {
        Ok(1) => {}
        Ok(count) => panic!("expected one byte, read {count}"),
        Err(error) if error.kind() == ErrorKind::WouldBlock => {
            panic!("a readable completion found nothing to read")
        }
        Err(error) => panic!("read failed: {error}"),
    }
}

/// Returns the value at `fraction` of sorted `samples`, by nearest rank.
fn percentile(samples: &[f64], fraction: f64) -> f64 {
    let rank = (fraction * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Measures RSS growth over `cycles` add/complete cycles on `RSS_FDS`
/// readable fds, after `RSS_WARM_UP_CYCLES` cycles, and returns it as JSON.
fn rss_growth(cycles: u64) -> String {
    let pairs = readable_pairs(RSS_FDS);
    let mut port = OwnedPort::new();
    let mut fd_index_by_id = HashMap::with_capacity(RSS_FDS);
    for (index, (reader, _)) in pairs.iter().enumerate() {
        fd_index_by_id.insert(port.add(reader), index);
    }

    let mut done = 0u64;
    let mut rss_before = None;
    let total = RSS_WARM_UP_CYCLES + cycles;
    while done < total {
        let batch = port.wait_batch();
        for completion in &batch {
            let index = fd_index_by_id
                .remove(&completion.id)
                .expect("every completion has a registration");
            fd_index_by_id.insert(port.add(&pairs[index].0), index);
        }
        done += batch.len() as u64;
        if rss_before.is_none() && done >= RSS_WARM_UP_CYCLES {
            rss_before = Some(rss_bytes());
        }
        port.recycle(batch);
    }

    let before = rss_before.expect("the warm-up ended");
    let after = rss_bytes();
    format!(
        "{{\"workload\":\"rss\",\"cycles\":{cycles},\"rssBeforeBytes\":{before},\
         \"rssAfterBytes\":{after},\"growthBytes\":{}}}",
        after as i64 - before as i64
    )
}

/// Returns the resident set size of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("failed to read /proc/self/status");
    let kilobytes = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("/proc/self/status has no VmRSS line");
    kilobytes * 1024
}

/// Returns the value after `--name`, parsed, or `default` if it is absent.
fn option<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    let Some(position) = args.iter().position(|arg| arg == name) else {
        return Ok(default);
    };
    let value = args
        .get(position + 1)
        .ok_or_else(|| format!("missing value after {name}"))?;
    value
        .parse()
        .map_err(|_| format!("invalid value for {name}: {value:?}"))
}

fn run(args: &[String]) -> Result<String, String> {
    match args.first().map(String::as_str) {
        Some("throughput") => {
            let fds = option(args, "--fds", 1000usize)?;
            let seconds = option(args, "--seconds", 3.0f64)?;
            let valid_seconds = seconds.is_finite() && seconds > 0.0;
            if fds == 0 || !valid_seconds {
                return Err(format!(
                    "--fds must be at least 1 and --seconds positive, got {fds} and {seconds}"
                ));
            }
            Ok(throughput(fds, seconds))
        }
        Some("ping-pong") => {
            let round_trips = option(args, "--round-trips", 20_000usize)?;
            if round_trips == 0 {
                return Err("--round-trips must be at least 1".to_owned());
            }
            Ok(ping_pong(round_trips))
        }
        Some("rss") => Ok(rss_growth(option(args, "--cycles", 1_000_000u64)?)),
        Some(other) => Err(format!("unknown workload {other:?}")),
        None => Err("missing workload".to_owned()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match run(&args) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("bench: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
