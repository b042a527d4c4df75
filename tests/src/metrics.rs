//! Reading the gate's Prometheus exposition (`GET /metrics`) in tests: each
//! family by name with its declared type and every series by its labels, so
//! a test can say which families moved between two scrapes.

use std::collections::BTreeMap;

/// One metric family of a scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Family {
    /// From `# TYPE` (`counter`, `gauge`, `histogram` …).
    pub kind: String,
    pub help: String,
    /// `suffix{label="value",…}` → value; a histogram contributes one entry
    /// per bucket (`_bucket{…,le="…"}`) plus its `_sum` and `_count`.
    pub series: BTreeMap<String, f64>,
}

/// One scrape, parsed.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// Parses exposition text format 0.0.4 (by `prometheus-parse`, not by the
    /// gate's own code). Panics on a sample whose family has no `# HELP`.
    pub fn parse(text: &str) -> Exposition {
        use prometheus_parse::{Scrape, Value};
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition text parses");
        let mut families: BTreeMap<String, Family> = scrape
            .docs
            .iter()
            .map(|(name, help)| (name.clone(), Family { help: help.clone(), ..Family::default() }))
            .collect();
        // The parser does not hand out the declared types: read the `# TYPE` lines.
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
                (words.next(), words.next(), words.next(), words.next())
            {
                families.entry(name.to_string()).or_default().kind = kind.to_string();
            }
        }
        for sample in &scrape.samples {
            let (family, suffix) = family_of(&families, &sample.metric);
            let mut labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            labels.sort();
            let labels = labels.join(",");
            let series = &mut families.get_mut(&family).expect("known family").series;
            match &sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    series.insert(format!("{suffix}{{{labels}}}"), *v);
                }
                Value::Histogram(buckets) => {
                    for bucket in buckets {
                        series.insert(format!("_bucket{{{labels},le={}}}", bucket.less_than), bucket.count);
                    }
                }
                Value::Summary(quantiles) => {
                    for q in quantiles {
                        series.insert(format!("{{{labels},quantile={}}}", q.quantile), q.count);
                    }
                }
            }
        }
        Exposition { families }
    }

    /// The value of the series of `family` whose labels are exactly `labels`
    /// (`_sum`/`_count` of a histogram with `suffix`).
    pub fn value_with(&self, family: &str, suffix: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        wanted.sort();
        self.families.get(family)?.series.get(&format!("{suffix}{{{}}}", wanted.join(","))).copied()
    }

    pub fn value(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.value_with(family, "", labels)
    }

    /// Every value the label `label` takes in `family`.
    pub fn label_values(&self, family: &str, label: &str) -> Vec<String> {
        let prefix = format!("{label}=\"");
        let mut values: Vec<String> = self
            .families
            .get(family)
            .map(|f| f.series.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
            .iter()
            .filter_map(|key| {
                let start = key.find(&prefix)? + prefix.len();
                let end = key[start..].find('"')? + start;
                Some(key[start..end].to_string())
            })
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

/// The family a sample belongs to: its own name, or a histogram's or
/// summary's name with `_sum` / `_count` / `_bucket` taken off.
fn family_of(families: &BTreeMap<String, Family>, metric: &str) -> (String, &'static str) {
    if families.contains_key(metric) {
        return (metric.to_string(), "");
    }
    for suffix in ["_sum", "_count", "_bucket"] {
        if let Some(base) = metric.strip_suffix(suffix).filter(|b| families.contains_key(*b)) {
            return (base.to_string(), suffix);
        }
    }
    panic!("sample {metric} has no # HELP / # TYPE of its own or of its family");
}

/// The families that differ from `first` in at least one of `scrapes`: a
/// value changed, a series appeared or went away.
pub fn moved<'a>(first: &Exposition, scrapes: impl IntoIterator<Item = &'a Exposition>) -> Vec<String> {
    let mut moved: Vec<String> = Vec::new();
    for scrape in scrapes {
        for (name, family) in &scrape.families {
            if first.families.get(name).map(|f| &f.series) != Some(&family.series) && !moved.contains(name) {
                moved.push(name.clone());
            }
        }
    }
    moved.sort();
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP calls_total Calls.\n# TYPE calls_total counter\n\
        calls_total{action=\"a\",decision=\"denied\"} 2\ncalls_total{action=\"b\",decision=\"executed\"} 1\n\
        # HELP d_seconds Time.\n# TYPE d_seconds histogram\nd_seconds_bucket{action=\"a\",le=\"0.5\"} 1\n\
        d_seconds_bucket{action=\"a\",le=\"+Inf\"} 1\nd_seconds_sum{action=\"a\"} 0.2\nd_seconds_count{action=\"a\"} 1\n\
        # HELP up Up.\n# TYPE up gauge\nup 1\n";

    #[test]
    fn families_keep_their_type_series_and_histogram_parts() {
        let e = Exposition::parse(TEXT);
        assert_eq!(e.families.keys().collect::<Vec<_>>(), ["calls_total", "d_seconds", "up"]);
        assert_eq!(e.families["d_seconds"].kind, "histogram");
        assert_eq!(e.value("calls_total", &[("decision", "denied"), ("action", "a")]), Some(2.0));
        assert_eq!(e.value_with("d_seconds", "_count", &[("action", "a")]), Some(1.0));
        assert_eq!(e.value("up", &[]), Some(1.0));
        assert_eq!(e.label_values("calls_total", "action"), ["a", "b"]);
    }

    #[test]
    fn only_changed_families_are_moved() {
        let first = Exposition::parse(TEXT);
        let later = Exposition::parse(&TEXT.replace("up 1", "up 0"));
        assert_eq!(moved(&first, [&first, &later]), ["up"]);
    }
}
