//! Labelled counters, gauges and histograms the plugins register (CoreDNS's metric names), and
//! their Prometheus text exposition.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Label pairs of one series, in the order given at registration.
pub type Labels = Vec<(String, String)>;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as f64 bits).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations counted into cumulative buckets (upper bounds ascending), with their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: Box<[f64]>,
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// Sum in nanounits (1e-9 of the observed unit), to stay an integer.
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram {
            bounds: bounds.into(),
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = (v.max(0.0) * 1e9) as u64;
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// CoreDNS's buckets for durations in seconds (`plugin.TimeBuckets`: 0.25 ms doubling to ~8 s).
pub fn time_buckets() -> Vec<f64> {
    (0..16).map(|i| 0.00025 * f64::from(1u32 << i)).collect()
}

#[derive(Debug)]
enum Series {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: &'static str,
    series: BTreeMap<Labels, Series>,
}

/// Every registered metric. Registering the same name and labels twice returns the same
/// series, so plugins may look series up per query (or keep the handle).
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Registry {
    pub fn counter(&self, name: &str, help: &str, pairs: &[(&str, &str)]) -> Arc<Counter> {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = family(&mut families, name, help, "counter");
        match family
            .series
            .entry(labels(pairs))
            .or_insert_with(|| Series::Counter(Arc::default()))
        {
            Series::Counter(c) => Arc::clone(c),
            _ => Arc::default(),
        }
    }

    pub fn gauge(&self, name: &str, help: &str, pairs: &[(&str, &str)]) -> Arc<Gauge> {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = family(&mut families, name, help, "gauge");
        match family
            .series
            .entry(labels(pairs))
            .or_insert_with(|| Series::Gauge(Arc::default()))
        {
            Series::Gauge(g) => Arc::clone(g),
            _ => Arc::default(),
        }
    }

    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        pairs: &[(&str, &str)],
        bounds: &[f64],
    ) -> Arc<Histogram> {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = family(&mut families, name, help, "histogram");
        match family
            .series
            .entry(labels(pairs))
            .or_insert_with(|| Series::Histogram(Arc::new(Histogram::new(bounds))))
        {
            Series::Histogram(h) => Arc::clone(h),
            _ => Arc::new(Histogram::new(bounds)),
        }
    }

    /// Appends the exposition text of every family.
    pub fn render(&self, out: &mut String) {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, f) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for (labels, series) in &f.series {
                match series {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{name}{} {}", text(labels, None), c.get());
                    }
                    Series::Gauge(g) => {
                        let _ = writeln!(out, "{name}{} {}", text(labels, None), g.get());
                    }
                    Series::Histogram(h) => {
                        let mut cumulative = 0;
                        for (b, n) in h.bounds.iter().zip(h.buckets.iter()) {
                            cumulative += n.load(Ordering::Relaxed);
                            let le = format!("{b}");
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {cumulative}",
                                text(labels, Some(&le))
                            );
                        }
                        let count = h.count();
                        let _ =
                            writeln!(out, "{name}_bucket{} {count}", text(labels, Some("+Inf")));
                        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                        let _ = writeln!(out, "{name}_sum{} {sum}", text(labels, None));
                        let _ = writeln!(out, "{name}_count{} {count}", text(labels, None));
                    }
                }
            }
        }
    }
}

fn family<'a>(
    families: &'a mut BTreeMap<String, Family>,
    name: &str,
    help: &str,
    kind: &'static str,
) -> &'a mut Family {
    families.entry(name.to_owned()).or_insert_with(|| Family {
        help: help.to_owned(),
        kind,
        series: BTreeMap::new(),
    })
}

/// `{a="x",b="y"}` (with `le` last for buckets), or nothing without labels.
fn text(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_of_every_kind() {
        let r = Registry::default();
        r.counter(
            "coredns_x_total",
            "X.",
            &[("server", "dns://:53"), ("zone", ".")],
        )
        .add(3);
        r.counter(
            "coredns_x_total",
            "X.",
            &[("server", "dns://:53"), ("zone", ".")],
        )
        .inc();
        r.gauge("coredns_g", "G.", &[]).set(2.5);
        let h = r.histogram("coredns_d_seconds", "D.", &[("t", "a\"b")], &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let mut out = String::new();
        r.render(&mut out);
        let want = "# HELP coredns_d_seconds D.\n# TYPE coredns_d_seconds histogram\n\
            coredns_d_seconds_bucket{t=\"a\\\"b\",le=\"0.1\"} 1\n\
            coredns_d_seconds_bucket{t=\"a\\\"b\",le=\"1\"} 2\n\
            coredns_d_seconds_bucket{t=\"a\\\"b\",le=\"+Inf\"} 3\n\
            coredns_d_seconds_sum{t=\"a\\\"b\"} 5.55\n\
            coredns_d_seconds_count{t=\"a\\\"b\"} 3\n\
            # HELP coredns_g G.\n# TYPE coredns_g gauge\ncoredns_g 2.5\n\
            # HELP coredns_x_total X.\n# TYPE coredns_x_total counter\n\
            coredns_x_total{server=\"dns://:53\",zone=\".\"} 4\n";
        assert_eq!(out, want);
    }

    #[test]
    fn time_buckets_double_from_a_quarter_millisecond() {
        let b = time_buckets();
        assert_eq!(b.len(), 16);
        assert_eq!(b[0], 0.00025);
        assert_eq!(b[15], 0.00025 * 32768.0);
    }
}
