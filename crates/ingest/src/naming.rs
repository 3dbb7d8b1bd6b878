//! Sensor names for line-protocol points: the default rule, or templates
//! the operator configures (`[[ingest.template]]`).
//!
//! The default is `<measurement>/<tag values in key order>/<field>`
//! (`cpu,host=gw1 usage=3` is `cpu/gw1/usage`). A template names the
//! readings of the points it matches in its own order, with only the tags
//! it wants:
//!
//! ```toml
//! [[ingest.template]]
//! measurement = "cpu"                    # exact, `prefix*`, or `*`
//! sensor = "{host}/cpu/{cpu}/{field}"    # {measurement}, {field}, {<tag key>}
//! ```
//!
//! The first template whose measurement matches and whose tags the point
//! all has decides; a point no template takes gets the default name. Every
//! substituted byte outside the sensor-name set becomes `_`, as in the
//! default rule; the literal text of a template must be name bytes itself.

use crate::line::{NamedReading, Point, is_name_byte, push_sanitized};

/// Most templates in a configuration.
pub const MAX_TEMPLATES: usize = 64;
/// Longest template text.
pub const MAX_TEMPLATE_BYTES: usize = 256;

/// Why a template was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Empty, or over [`MAX_TEMPLATE_BYTES`].
    #[error("must be 1 to {MAX_TEMPLATE_BYTES} bytes")]
    Length,
    /// A `{` without its `}`, or an empty or nested placeholder.
    #[error("a placeholder is not closed, empty or nested")]
    Placeholder,
    /// Literal text outside the sensor-name set (`A-Za-z0-9._:/-`).
    #[error("literal text may only hold sensor-name characters (A-Za-z0-9._:/-)")]
    Literal,
    /// No `{field}`: every field of a point would get the same name.
    #[error("must contain {{field}}")]
    NoField,
    /// The measurement pattern is empty, too long, or has a `*` other than
    /// at its end.
    #[error("the measurement must be a name, `prefix*` or `*`")]
    Measurement,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Measurement,
    Field,
    Tag(String),
}

/// One template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The measurement it matches: exact, or a prefix when it ended in `*`.
    measurement: String,
    prefix: bool,
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template: the measurement pattern and the sensor text.
    ///
    /// # Errors
    /// [`TemplateError`] naming what is wrong.
    pub fn parse(measurement: &str, sensor: &str) -> Result<Self, TemplateError> {
        let (measurement, prefix) = match measurement.strip_suffix('*') {
            Some(p) => (p, true),
            None => (measurement, false),
        };
        if (!prefix && measurement.is_empty())
            || measurement.len() > MAX_TEMPLATE_BYTES
            || measurement.contains('*')
        {
            return Err(TemplateError::Measurement);
        }
        if sensor.is_empty() || sensor.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::Length);
        }
        let mut parts = Vec::new();
        let mut rest = sensor;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or(TemplateError::Placeholder)?;
                let key = &after[..end];
                if key.is_empty() || key.contains('{') {
                    return Err(TemplateError::Placeholder);
                }
                parts.push(match key {
                    "measurement" => Part::Measurement,
                    "field" => Part::Field,
                    tag => Part::Tag(tag.to_owned()),
                });
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let text = &rest[..end];
                if text.contains('}') || !text.bytes().all(is_name_byte) {
                    return Err(TemplateError::Literal);
                }
                parts.push(Part::Literal(text.to_owned()));
                rest = &rest[end..];
            }
        }
        if !parts.contains(&Part::Field) {
            return Err(TemplateError::NoField);
        }
        Ok(Self {
            measurement: measurement.to_owned(),
            prefix,
            parts,
        })
    }

    /// Whether it takes `point`: its measurement matches and the point has
    /// every tag it names.
    fn takes(&self, point: &Point<'_>) -> bool {
        let m: &str = &point.measurement;
        let matches = if self.prefix {
            m.starts_with(&self.measurement)
        } else {
            m == self.measurement
        };
        matches
            && self.parts.iter().all(|p| match p {
                Part::Tag(key) => tag(point, key).is_some(),
                _ => true,
            })
    }

    fn name(&self, point: &Point<'_>, field: &str) -> String {
        let len = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Literal(text) => text.len(),
                Part::Measurement => point.measurement.len(),
                Part::Field => field.len(),
                Part::Tag(key) => tag(point, key).map_or(0, str::len),
            })
            .sum();
        let mut out = String::with_capacity(len);
        for p in &self.parts {
            match p {
                Part::Literal(text) => out.push_str(text),
                Part::Measurement => push_sanitized(&mut out, &point.measurement),
                Part::Field => push_sanitized(&mut out, field),
                Part::Tag(key) => push_sanitized(&mut out, tag(point, key).unwrap_or_default()),
            }
        }
        out
    }
}

fn tag<'p>(point: &'p Point<'_>, key: &str) -> Option<&'p str> {
    point
        .tags
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_ref())
}

/// The readings of `point`, named by the first of `templates` that takes
/// it, else by the default rule; string fields are skipped.
#[must_use]
pub fn readings(point: &Point<'_>, templates: &[Template]) -> Vec<NamedReading> {
    let Some(t) = templates.iter().find(|t| t.takes(point)) else {
        return point.readings();
    };
    point
        .fields
        .iter()
        .filter_map(|(k, v)| {
            Some(NamedReading {
                value: v.as_reading()?,
                sensor: t.name(point, k),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{Limits, parse};

    fn names(line: &str, templates: &[Template]) -> Vec<String> {
        let p = parse(line.as_bytes(), &Limits::DEFAULT).unwrap().unwrap();
        readings(&p, templates)
            .into_iter()
            .map(|r| r.sensor)
            .collect()
    }

    #[test]
    fn the_first_template_that_takes_a_point_names_it() {
        let t = [
            Template::parse("cpu", "{host}/cpu/{cpu}/{field}").unwrap(),
            Template::parse("disk*", "{host}/{measurement}/{field}").unwrap(),
            Template::parse("*", "other/{measurement}.{field}").unwrap(),
        ];
        assert_eq!(
            names("cpu,host=gw1,cpu=cpu0 idle=98,user=1i,msg=\"x\"", &t),
            ["gw1/cpu/cpu0/idle", "gw1/cpu/cpu0/user"]
        );
        // Missing a tag the first names: the next that takes it.
        assert_eq!(names("cpu,host=gw1 idle=98", &t), ["other/cpu.idle"]);
        assert_eq!(
            names("disk_io,host=a\\ b,path=/var reads=3", &t),
            ["a_b/disk_io/reads"]
        );
        // None: the default rule.
        assert_eq!(names("cpu,host=gw1 idle=98", &t[..1]), ["cpu/gw1/idle"]);
    }

    #[test]
    fn bad_templates_are_refused() {
        for (m, s, e) in [
            ("cpu", "", TemplateError::Length),
            ("cpu", "{host", TemplateError::Placeholder),
            ("cpu", "{}/{field}", TemplateError::Placeholder),
            ("cpu", "a b/{field}", TemplateError::Literal),
            ("cpu", "x}/{field}", TemplateError::Literal),
            ("cpu", "{host}/x", TemplateError::NoField),
            ("", "{field}", TemplateError::Measurement),
            ("c*u", "{field}", TemplateError::Measurement),
        ] {
            assert_eq!(Template::parse(m, s), Err(e), "{m} {s}");
        }
        assert!(Template::parse("*", "{field}").is_ok());
    }
}
