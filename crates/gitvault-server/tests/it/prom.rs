//! A strict reader of the Prometheus text exposition format 0.0.4, written from the format's
//! specification rather than from the server's code: it refuses whatever Prometheus would refuse
//! (and some things it only frowns on — a family split in two, a sample before its TYPE, a
//! duplicate series), so "it parses here" means "Prometheus scrapes it".

use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub types: HashMap<String, String>,
    pub help: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the one sample of `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect();
        assert!(matching.len() <= 1, "{name} {labels:?} matches {} samples", matching.len());
        matching.first().map(|s| s.value)
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')) => {
            s.parse().map_err(|e| format!("value {s:?}: {e}"))
        }
        _ => Err(format!("value {s:?} is not a number")),
    }
}

/// Labels from just after `{` up to and including `}`; returns them and the rest of the line.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let name = &s[..eq];
        if !valid_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        s = s[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling backslash")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("raw newline in label value".to_string()),
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        s = &s[end + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".to_string());
        }
    }
}

pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".to_string());
    }
    let mut out = Exposition::default();
    let mut finished_families: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        let family_switch = |name: &str, current: &mut Option<String>, finished: &mut HashSet<String>| {
            if current.as_deref() != Some(name) {
                if finished.contains(name) {
                    return Err(format!("family {name} split into two groups"));
                }
                if let Some(prev) = current.take() {
                    finished.insert(prev);
                }
                *current = Some(name.to_string());
            }
            Ok(())
        };
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), help) => {
                    if !valid_metric_name(name) {
                        return Err(err(format!("bad metric name {name:?}")));
                    }
                    family_switch(name, &mut current, &mut finished_families).map_err(err)?;
                    if out.help.insert(name.to_string(), help.unwrap_or_default().to_string()).is_some() {
                        return Err(err("HELP twice".to_string()));
                    }
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !valid_metric_name(name) {
                        return Err(err(format!("bad metric name {name:?}")));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(err(format!("bad type {kind:?}")));
                    }
                    family_switch(name, &mut current, &mut finished_families).map_err(err)?;
                    if out.samples.iter().any(|s| s.name == name) {
                        return Err(err("TYPE after a sample of its family".to_string()));
                    }
                    if out.types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(err("TYPE twice".to_string()));
                    }
                }
                _ => {} // Other comments are allowed.
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value".to_string()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(after) => parse_labels(after).map_err(err)?,
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let rest = rest.strip_prefix(' ').ok_or_else(|| err("no space before the value".to_string()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or_default()).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".to_string()));
        }
        family_switch(name, &mut current, &mut finished_families).map_err(err)?;
        if !series.insert((name.to_string(), labels.clone())) {
            return Err(err("duplicate series".to_string()));
        }
        out.samples.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(out)
}

#[test]
fn the_reader_refuses_what_prometheus_refuses() {
    let ok = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 3\n";
    let e = parse(ok).expect("valid");
    assert_eq!(e.samples[0].labels["x"], "q\"\\\n");
    for bad in [
        "a 1",                                     // no final newline
        "a{x=\"1\"} one\n",                        // value
        "a{x=\"\\t\"} 1\n",                        // escape
        "a{x=1} 1\n",                              // unquoted
        "a 1\nb 1\na 2\n",                         // split family
        "a 1\n# TYPE a gauge\n",                   // TYPE after a sample
        "a{x=\"1\",x=\"2\"} 1\n",                  // label twice
        "a{x=\"1\"} 1\na{x=\"1\"} 2\n",            // duplicate series
        "1a 1\n",                                  // name
        "# TYPE a gauge\n# TYPE a counter\na 1\n", // TYPE twice
        "a 1 2 3\n",                               // trailing
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
