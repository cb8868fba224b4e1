//! `stowage validate [--json]`: every location, or the one selected.

use stowage::config::ConfigErrors;
use stowage::{CheckStatus, Location, ValidationReport};

use crate::context::Context;
use crate::failure::Failure;

/// Validates and prints; fails when any location has a failed check, and
/// with a configuration error (exit code 2) when a location's driver is
/// one stowage does not implement (the others are validated first).
pub(crate) async fn run(ctx: &Context, json: bool) -> Result<(), Failure> {
    let locations: Vec<&Location> = match &ctx.location {
        Some(_) => vec![ctx.selected()?],
        None => ctx.config.locations.iter().collect(),
    };
    let mut all_ok = true;
    let mut out = Vec::new();
    let mut refused = ConfigErrors::default();
    for location in locations {
        match location.check_supported() {
            Ok(()) => {}
            Err(stowage::Error::Config(errs)) => {
                if json {
                    out.push(serde_json::json!({
                        "location": location.name,
                        "driver": location.driver.driver_name(),
                        "ok": false,
                        "supported": false,
                    }));
                } else {
                    println!(
                        "location {} ({}): NOT SUPPORTED by stowage, not validated",
                        location.name,
                        location.driver.driver_name()
                    );
                }
                refused.extend(errs);
                continue;
            }
            Err(e) => return Err(e.into()),
        }
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
    if !refused.is_empty() {
        let mut failure = Failure::from(stowage::Error::Config(refused));
        if !all_ok {
            failure.message.push_str("\nand validation failed");
        }
        return Err(failure);
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
        _ => "unknown",
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
