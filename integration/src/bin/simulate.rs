//! The seeded fault simulation of the S3 driver (`stowage_integration::sim`
//! describes the faults, the operations and the invariants).
//!
//! Run with `integration/simulate.sh` (starts Ceph RGW), or with
//! `STOWAGE_S3_TEST_*` set: `cargo run -p stowage-integration --bin
//! simulate -- --seeds 20`. Prints a line per seed and ends with
//! `seeds: N, operations: M, faults: F, violations: V`; exits 0 only when
//! V is 0.

use std::collections::BTreeMap;
use std::process::ExitCode;

use futures::StreamExt;

use stowage_integration::sim::{self, FaultKind, FaultStats, SimOptions};
use stowage_integration::S3Env;

const USAGE: &str = "usage: simulate [--seeds N | --seed S] [--ops K] [--fault-rate P] \
[--faults KIND,...] [--jobs J] [--verbose]
  --seeds N        seeds 1 to N (default 10)
  --seed S         replay seed S only
  --ops K          operations per seed (default 25)
  --fault-rate P   probability that a request is disturbed (default 0.15)
  --faults LIST    fault kinds to inject, comma-separated (default all: reset,
                   drop-answer, internal-error, slow-down, cut-body, slow, ignore-range)
  --jobs J         seeds run at once (default 4; each on a root of its own)
  --verbose        print every step, its outcome and its faults";

/// What the command line asks for.
struct Args {
    seeds: Vec<u64>,
    jobs: usize,
    options: SimOptions,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut seeds: Option<Vec<u64>> = None;
    let mut options = SimOptions::default();
    let mut jobs = 4usize;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seeds" => {
                let n: u64 = number(&value("--seeds")?, "--seeds")?;
                if seeds.replace((1..=n).collect()).is_some() {
                    return Err("give --seeds or --seed once".into());
                }
            }
            "--seed" => {
                let s: u64 = number(&value("--seed")?, "--seed")?;
                if seeds.replace(vec![s]).is_some() {
                    return Err("give --seeds or --seed once".into());
                }
            }
            "--ops" => options.ops = number(&value("--ops")?, "--ops")?,
            "--fault-rate" => {
                let rate: f64 = number(&value("--fault-rate")?, "--fault-rate")?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!("--fault-rate {rate} is not between 0 and 1"));
                }
                options.fault_rate = rate;
            }
            "--faults" => {
                options.kinds = value("--faults")?
                    .split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::parse)
                    .collect::<Result<Vec<FaultKind>, String>>()?;
            }
            "--jobs" => {
                jobs = number(&value("--jobs")?, "--jobs")?;
                if jobs == 0 {
                    return Err("--jobs must be at least 1".into());
                }
            }
            "--verbose" => options.verbose = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        seeds: seeds.unwrap_or_else(|| (1..=10).collect()),
        jobs,
        options,
    })
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name} {text:?} is not a valid number"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("simulate: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let env = S3Env::get();
    let kinds: Vec<&str> = args.options.kinds.iter().map(|k| k.name()).collect();
    println!(
        "simulating the S3 driver against {} ({}), bucket {}: {} seed(s), {} operations each, \
         fault rate {}, faults {}",
        env.server,
        env.endpoint.as_deref().unwrap_or("AWS"),
        env.bucket,
        args.seeds.len(),
        args.options.ops,
        args.options.fault_rate,
        kinds.join(",")
    );
    let mut operations = 0usize;
    let mut totals = FaultStats::default();
    let mut violations = 0usize;
    let mut failing: BTreeMap<u64, usize> = BTreeMap::new();
    // Seeds are independent (each on a root of its own, its decisions a
    // function of its own requests), so several run at once; reports come
    // back in seed order.
    let mut reports = futures::stream::iter(args.seeds.iter().copied())
        .map(|seed| {
            let (env, options) = (&env, &args.options);
            async move { (seed, sim::run_seed(env, options, seed).await) }
        })
        .buffered(args.jobs);
    while let Some((seed, report)) = reports.next().await {
        println!(
            "seed {seed}: {} operations, {} failed calls, {} requests, {} faults ({}), {} \
             violations, {:.1} s, decisions {:016x}",
            report.operations,
            report.failed_calls,
            report.faults.requests,
            report.faults.faults,
            FaultStats::summary(&report.faults.by_kind),
            report.violations.len(),
            report.elapsed.as_secs_f64(),
            report.fingerprint
        );
        operations += report.operations;
        totals.merge(&report.faults);
        violations += report.violations.len();
        if !report.violations.is_empty() {
            failing.insert(seed, report.violations.len());
        }
    }
    println!("faults by kind: {}", FaultStats::summary(&totals.by_kind));
    println!(
        "faults by operation: {}",
        FaultStats::summary(&totals.by_operation)
    );
    for (seed, count) in &failing {
        println!(
            "seed {seed}: {count} violation(s); replay: {}",
            args.options.replay_command(*seed)
        );
    }
    println!(
        "seeds: {}, operations: {operations}, faults: {}, violations: {violations}",
        args.seeds.len(),
        totals.faults
    );
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
