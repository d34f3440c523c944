//! A Prometheus text exposition format (0.0.4) validator: HELP/TYPE lines, one TYPE per family
//! given before its samples, families not interleaved, metric and label name syntax, label value
//! escapes, no duplicate series, sample values; for histograms: only `_bucket`/`_sum`/`_count`,
//! buckets cumulative in `le` order, `+Inf` present and equal to `_count`, `_sum` present.
//! Also runs `promtool check metrics` when promtool is installed.

use std::collections::{BTreeMap, HashMap, HashSet};

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Family {
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// A parsed, validated scrape.
#[derive(Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    pub fn family(&self, name: &str) -> &Family {
        self.families
            .get(name)
            .unwrap_or_else(|| panic!("no metric family {name}; have {:?}", self.families.keys()))
    }

    /// Samples named `name` whose labels include every `(k, v)` of `want`.
    pub fn find(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.families
            .values()
            .flat_map(|f| f.samples.iter())
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The sum of the samples [`Exposition::find`] returns.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.find(name, want).iter().map(|s| s.value).sum()
    }
}

fn valid_metric_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn valid_label_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !n.starts_with("__")
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse::<f64>().map_err(|_| format!("bad value `{v}`")),
    }
}

/// `{a="x",b="y"}` → labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = rest[..eq].trim();
        if !valid_label_name(name) {
            return Err(format!("bad label name `{name}`"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in label {name}")),
                },
                Some((_, '\n')) => return Err("newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} at `{rest}`"));
        }
    }
}

/// The family a sample name belongs to, given the declared families.
fn family_of<'a>(name: &'a str, kinds: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if kinds
                .get(base)
                .is_some_and(|k| k == "histogram" || k == "summary")
            {
                return base;
            }
        }
    }
    name
}

/// Parses and validates a scrape; the first problem found is the error.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut exp = Exposition::default();
    let mut kinds: HashMap<String, String> = HashMap::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, Labels)> = HashSet::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the scrape does not end with a newline".into());
    }
    for (no, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: `{line}`", no + 1);
        if line.trim().is_empty() {
            continue;
        }
        let mut switch = |fam: &str, current: &mut Option<String>| -> Result<(), String> {
            if current.as_deref() != Some(fam) {
                if closed.contains(fam) {
                    return Err(format!("family {fam} is not contiguous"));
                }
                if let Some(c) = current.take() {
                    closed.insert(c);
                }
                *current = Some(fam.to_string());
            }
            Ok(())
        };
        if let Some(c) = line.strip_prefix('#') {
            let mut parts = c.trim_start().splitn(3, ' ');
            let kw = parts.next().unwrap_or("");
            if kw != "HELP" && kw != "TYPE" {
                continue; // a plain comment
            }
            let name = parts.next().ok_or_else(|| at("no metric name".into()))?;
            if !valid_metric_name(name) {
                return Err(at(format!("bad metric name {name}")));
            }
            let arg = parts.next().unwrap_or("");
            switch(name, &mut current).map_err(at)?;
            let fam = exp.families.entry(name.to_string()).or_default();
            if kw == "TYPE" {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                    return Err(at(format!("bad type {arg}")));
                }
                if kinds.contains_key(name) {
                    return Err(at(format!("second TYPE for {name}")));
                }
                if !fam.samples.is_empty() {
                    return Err(at(format!("TYPE of {name} after its samples")));
                }
                kinds.insert(name.to_string(), arg.to_string());
                fam.kind = arg.to_string();
            } else {
                if fam.help.is_some() {
                    return Err(at(format!("second HELP for {name}")));
                }
                fam.help = Some(arg.to_string());
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(at(format!("bad metric name {name}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (Labels::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| at(format!("bad timestamp {ts}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let fam_name = family_of(name, &kinds).to_string();
        switch(&fam_name, &mut current).map_err(at)?;
        if !series.insert((name.to_string(), labels.clone())) {
            return Err(at("duplicate series".into()));
        }
        let kind = kinds.get(&fam_name).cloned().unwrap_or_default();
        if kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(at("negative counter".into()));
        }
        if kind == "histogram" && name == fam_name {
            return Err(at("histogram sample without _bucket/_sum/_count".into()));
        }
        if name.ends_with("_bucket") && kind == "histogram" {
            let le = labels
                .get("le")
                .ok_or_else(|| at("bucket without le".into()))?;
            parse_value(le).map_err(at)?;
        }
        exp.families
            .entry(fam_name)
            .or_default()
            .samples
            .push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
    }
    for (name, fam) in &exp.families {
        if fam.kind == "histogram" {
            check_histogram(name, fam)?;
        }
    }
    Ok(exp)
}

/// One histogram series: `(le, cumulative count)` buckets, `_sum`, `_count`.
type Group = (Vec<(f64, f64)>, Option<f64>, Option<f64>);

fn check_histogram(name: &str, fam: &Family) -> Result<(), String> {
    let mut groups: BTreeMap<Labels, Group> = BTreeMap::new();
    for s in &fam.samples {
        let mut key = s.labels.clone();
        let le = key.remove("le");
        let g = groups.entry(key).or_default();
        if s.name.ends_with("_bucket") {
            let le = parse_value(le.as_deref().unwrap_or(""))?;
            g.0.push((le, s.value));
        } else if s.name.ends_with("_sum") {
            g.1 = Some(s.value);
        } else {
            g.2 = Some(s.value);
        }
    }
    for (labels, (buckets, sum, count)) in groups {
        let what = format!("histogram {name}{labels:?}");
        if buckets.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(format!("{what}: buckets not in increasing le order"));
        }
        if buckets.windows(2).any(|w| w[0].1 > w[1].1) {
            return Err(format!("{what}: buckets not cumulative {buckets:?}"));
        }
        let inf = buckets
            .last()
            .filter(|b| b.0 == f64::INFINITY)
            .ok_or_else(|| format!("{what}: no +Inf bucket"))?;
        let count = count.ok_or_else(|| format!("{what}: no _count"))?;
        sum.ok_or_else(|| format!("{what}: no _sum"))?;
        if inf.1 != count {
            return Err(format!("{what}: +Inf bucket {} != _count {count}", inf.1));
        }
    }
    Ok(())
}

/// `promtool check metrics` on `text`: `None` when promtool is not installed, else its verdict
/// (only errors fail; lint warnings are returned for the report).
pub fn promtool(text: &str) -> Option<Result<String, String>> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits 3 for lint problems only, 1 for parse errors.
    Some(match out.status.code() {
        Some(0) | Some(3) => Ok(msg),
        _ => Err(msg),
    })
}

#[test]
fn validator_rejects_broken_text() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    parse(good).expect("good text");
    for bad in [
        "# TYPE a counter\n# TYPE a counter\na 1\n",
        "a{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n",
        "a{1x=\"1\"} 1\n",
        "a{x=\"\\q\"} 1\n",
        "a{x=1} 1\n",
        "a 1\na 1\n",
        "a one\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 3\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 3\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE a_total counter\na_total -1\n",
        "a 1",
    ] {
        assert!(parse(bad).is_err(), "accepted:\n{bad}");
    }
}
