//! Metrics a driver or a layer exposes about itself (fallbacks, bypasses,
//! cache hits, credential refreshes, operation latencies), for a registry's
//! `/metrics` endpoint: counters, and histograms with buckets.

/// One sample: a monotonically increasing count with labels, or (when its
/// `histogram` field is set) a [`Histogram`], rendered as Prometheus
/// `_bucket`, `_sum` and `_count` series.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metric {
    /// The metric name, Prometheus style (`stowage_cloudfront_urls_total`).
    pub name: &'static str,
    /// One line saying what it counts.
    pub help: &'static str,
    /// Label pairs (`cause` = `key_unavailable`, ...).
    pub labels: Vec<(&'static str, String)>,
    /// The count; for a histogram, the number of observations.
    pub value: u64,
    /// The buckets and sum of a histogram sample; `None` for a counter.
    pub histogram: Option<Histogram>,
}

impl Metric {
    /// A counter sample without labels.
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            help,
            labels: Vec::new(),
            value,
            histogram: None,
        }
    }

    /// A histogram sample without labels (its `value` is the number of
    /// observations).
    pub fn histogram(name: &'static str, help: &'static str, histogram: Histogram) -> Self {
        Self {
            name,
            help,
            labels: Vec::new(),
            value: histogram.count(),
            histogram: Some(histogram),
        }
    }

    /// Adds a label.
    pub fn with_label(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((name, value.into()));
        self
    }
}

/// Observations counted in buckets by upper bound (`le`, as Prometheus
/// does: a value equal to a bound falls in that bucket), with their count
/// and sum.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// Upper bounds, ascending, finite; `+Inf` is implied.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), one per bound.
    counts: Vec<u64>,
    /// All observations, those above the last bound included.
    count: u64,
    /// The sum of the observed values.
    sum: f64,
}

impl Histogram {
    /// An empty histogram with buckets up to each of `bounds` (sorted here;
    /// duplicates and non-finite bounds are dropped, `+Inf` is implied).
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = vec![0; bounds.len()];
        Self {
            bounds,
            counts,
            count: 0,
            sum: 0.0,
        }
    }

    /// Counts one observation of `value`.
    pub fn observe(&mut self, value: f64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        if let Some(n) = self.counts.get_mut(bucket) {
            *n += 1;
        }
        self.count += 1;
        self.sum += value;
    }

    /// The buckets' upper bounds, ascending (without `+Inf`).
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// For each bound, the observations at or below it (cumulative, as
    /// Prometheus' `_bucket` series are).
    pub fn cumulative(&self) -> Vec<u64> {
        self.counts
            .iter()
            .scan(0u64, |total, n| {
                *total += n;
                Some(*total)
            })
            .collect()
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the observed values.
    pub fn sum(&self) -> f64 {
        self.sum
    }
}

/// Equal when the bounds, counts and sum are bit for bit the same (so that
/// [`Metric`] stays `Eq`).
impl PartialEq for Histogram {
    fn eq(&self, other: &Self) -> bool {
        self.bounds.len() == other.bounds.len()
            && self
                .bounds
                .iter()
                .zip(&other.bounds)
                .all(|(a, b)| a.to_bits() == b.to_bits())
            && self.counts == other.counts
            && self.count == other.count
            && self.sum.to_bits() == other.sum.to_bits()
    }
}

impl Eq for Histogram {}

/// Renders samples in the Prometheus text format (one `# HELP`/`# TYPE`
/// per name, in the order names first appear; the type is the first
/// sample's: `histogram` when it has buckets, else `counter`).
pub fn render_prometheus(metrics: &[Metric]) -> String {
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in metrics {
        if !seen.contains(&m.name) {
            seen.push(m.name);
            let kind = if m.histogram.is_some() {
                "histogram"
            } else {
                "counter"
            };
            out.push_str(&format!(
                "# HELP {} {}\n# TYPE {} {kind}\n",
                m.name, m.help, m.name
            ));
            for same in metrics.iter().filter(|x| x.name == m.name) {
                match &same.histogram {
                    None => sample(&mut out, same.name, "", &same.labels, None, same.value),
                    Some(h) => {
                        for (bound, n) in h.bounds().iter().zip(h.cumulative()) {
                            let le = number(*bound);
                            sample(
                                &mut out,
                                same.name,
                                "_bucket",
                                &same.labels,
                                Some(le.as_str()),
                                n,
                            );
                        }
                        sample(
                            &mut out,
                            same.name,
                            "_bucket",
                            &same.labels,
                            Some("+Inf"),
                            h.count(),
                        );
                        sample(
                            &mut out,
                            same.name,
                            "_sum",
                            &same.labels,
                            None,
                            number(h.sum()),
                        );
                        sample(&mut out, same.name, "_count", &same.labels, None, h.count());
                    }
                }
            }
        }
    }
    out
}

/// Appends one line: `name{labels} value`, with `le` after the labels when
/// given.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&'static str, String)],
    le: Option<&str>,
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if !pairs.is_empty() {
        out.push_str(&format!("{{{}}}", pairs.join(",")));
    }
    out.push_str(&format!(" {value}\n"));
}

/// A float as Prometheus writes it (`0.005`, `1`, `+Inf`).
fn number(value: f64) -> String {
    match value {
        v if v.is_infinite() && v.is_sign_positive() => "+Inf".to_string(),
        v if v.is_infinite() => "-Inf".to_string(),
        v => v.to_string(),
    }
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

    #[test]
    fn histograms_render_buckets_sum_and_count() {
        let mut h = Histogram::new(&[1.0, 0.5, 0.5, f64::NAN]);
        assert_eq!(h.bounds(), &[0.5, 1.0]);
        for v in [0.25, 0.5, 0.75, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.cumulative(), vec![2, 3]);
        let text = render_prometheus(&[
            Metric::histogram("d_seconds", "Ds.", h.clone()).with_label("op", "get"),
            Metric::histogram("d_seconds", "Ds.", Histogram::new(&[0.5, 1.0])),
            Metric::counter("e_total", "Es.", 7),
        ]);
        assert_eq!(
            text,
            "# HELP d_seconds Ds.\n# TYPE d_seconds histogram\n\
             d_seconds_bucket{op=\"get\",le=\"0.5\"} 2\n\
             d_seconds_bucket{op=\"get\",le=\"1\"} 3\n\
             d_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n\
             d_seconds_sum{op=\"get\"} 4.5\n\
             d_seconds_count{op=\"get\"} 4\n\
             d_seconds_bucket{le=\"0.5\"} 0\n\
             d_seconds_bucket{le=\"1\"} 0\n\
             d_seconds_bucket{le=\"+Inf\"} 0\n\
             d_seconds_sum 0\n\
             d_seconds_count 0\n\
             # HELP e_total Es.\n# TYPE e_total counter\ne_total 7\n"
        );
        let metric = Metric::histogram("d_seconds", "Ds.", h);
        assert_eq!(metric.value, 4, "a histogram's value is its count");
        assert_eq!(metric.clone(), metric);
    }
}
