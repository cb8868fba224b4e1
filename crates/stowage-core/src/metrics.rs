//! Counters a driver exposes about itself (fallbacks, bypasses, cache hits,
//! credential refreshes), for a registry's `/metrics` endpoint.

/// One counter sample: a monotonically increasing count with labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// The metric name, Prometheus style (`stowage_cloudfront_urls_total`).
    pub name: &'static str,
    /// One line saying what it counts.
    pub help: &'static str,
    /// Label pairs (`cause` = `key_unavailable`, ...).
    pub labels: Vec<(&'static str, String)>,
    /// The count.
    pub value: u64,
}

impl Metric {
    /// A counter sample without labels.
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            help,
            labels: Vec::new(),
            value,
        }
    }

    /// Adds a label.
    pub fn with_label(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((name, value.into()));
        self
    }
}

/// Renders samples in the Prometheus text format (one `# HELP`/`# TYPE`
/// per name, in the order names first appear).
pub fn render_prometheus(metrics: &[Metric]) -> String {
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in metrics {
        if !seen.contains(&m.name) {
            seen.push(m.name);
            out.push_str(&format!(
                "# HELP {} {}\n# TYPE {} counter\n",
                m.name, m.help, m.name
            ));
            for same in metrics.iter().filter(|x| x.name == m.name) {
                out.push_str(same.name);
                if !same.labels.is_empty() {
                    let labels: Vec<String> = same
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                        .collect();
                    out.push_str(&format!("{{{}}}", labels.join(",")));
                }
                out.push_str(&format!(" {}\n", same.value));
            }
        }
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_grouped_counters() {
        let text = render_prometheus(&[
            Metric::counter("a_total", "As.", 1).with_label("cause", "x\"y"),
            Metric::counter("b_total", "Bs.", 2),
            Metric::counter("a_total", "As.", 3).with_label("cause", "z"),
        ]);
        assert_eq!(
            text,
            "# HELP a_total As.\n# TYPE a_total counter\na_total{cause=\"x\\\"y\"} 1\n\
             a_total{cause=\"z\"} 3\n# HELP b_total Bs.\n# TYPE b_total counter\nb_total 2\n"
        );
    }
}
