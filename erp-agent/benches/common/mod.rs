//! What the agent's benchmarks share: the CPU time of waited-for children (a figure that does
//! not depend on the machine's load) and medians of rounds.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// User + system CPU of every child this process has waited for, grandchildren they waited for
/// included: the difference around a run is that run's CPU.
pub fn children_cpu() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let to = |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
    to(usage.user_time()) + to(usage.system_time())
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Runs a benchmark's body on a runtime of its own: exit 0, or 1 with why it failed.
pub fn run_to_exit(body: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    match runtime.block_on(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("benchmark failed: {error}");
            ExitCode::FAILURE
        }
    }
}
