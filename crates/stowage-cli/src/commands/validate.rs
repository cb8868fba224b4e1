//! `stowage validate [--json]`: every location, or the one selected.

use stowage::{CheckStatus, Location, ValidationReport};

use crate::context::Context;
use crate::failure::Failure;

/// Validates and prints; fails when any location has a failed check.
pub(crate) async fn run(ctx: &Context, json: bool) -> Result<(), Failure> {
    let locations: Vec<&Location> = match &ctx.location {
        Some(_) => vec![ctx.selected()?],
        None => ctx.config.locations.iter().collect(),
    };
    let mut all_ok = true;
    let mut out = Vec::new();
    for location in locations {
        let report = match stowage::open(location).await {
            Ok(storage) => storage.validate().await,
            Err(e) => {
                let mut r = ValidationReport::new("-");
                r.fail("open storage", &e);
                r
            }
        };
        all_ok &= report.is_ok();
        if json {
            out.push(to_json(location, &report));
        } else {
            print_human(location, &report);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    }
    if all_ok {
        Ok(())
    } else {
        Err(Failure::failed("validation failed"))
    }
}

fn print_human(location: &Location, report: &ValidationReport) {
    let verdict = if report.is_ok() { "ok" } else { "FAILED" };
    println!(
        "location {} ({}, driver {}): {verdict}",
        location.name,
        location.driver.driver_name(),
        report.driver
    );
    for (k, v) in &report.facts {
        println!("  {k}: {v}");
    }
    for c in &report.checks {
        let detail = if c.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", c.detail)
        };
        println!("  [{:>8}] {}{detail}", c.status.to_string(), c.name);
    }
}

fn to_json(location: &Location, report: &ValidationReport) -> serde_json::Value {
    let status = |s: CheckStatus| match s {
        CheckStatus::Ok => "ok",
        CheckStatus::Degraded => "degraded",
        CheckStatus::Failed => "failed",
    };
    serde_json::json!({
        "location": location.name,
        "driver": location.driver.driver_name(),
        "ok": report.is_ok(),
        "facts": report.facts.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "checks": report.checks.iter().map(|c| serde_json::json!({
            "name": c.name, "status": status(c.status), "detail": c.detail,
        })).collect::<Vec<_>>(),
    })
}
