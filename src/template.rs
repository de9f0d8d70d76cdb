//! Name templates such as `{name}.example.com.` or `{name}`: literal text with `{name}` and
//! `{id}` placeholders filled from an instance. Pure.

use std::fmt;

use crate::model::Instance;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Name,
    Id,
}

/// A parsed template. A template without placeholders names one fixed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    source: String,
    parts: Vec<Part>,
}

impl NameTemplate {
    /// Parses `text`; only `{name}` and `{id}` are placeholders.
    pub fn parse(text: &str) -> Result<NameTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("unmatched '}}' in {text:?}"));
            }
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {text:?}"))?;
            let part = match &after[..close] {
                "name" => Part::Name,
                "id" => Part::Id,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} in {text:?}; use {{name}} or {{id}}"
                    ));
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(NameTemplate {
            source: text.to_string(),
            parts,
        })
    }

    /// True when the template has a placeholder, i.e. names one object per instance.
    pub fn is_per_instance(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    /// Fills the placeholders from `instance`. The result is unvalidated text.
    pub fn render(&self, instance: &Instance) -> String {
        self.render_with(&instance.name, &instance.id)
    }

    /// Fills the placeholders with the given values (used to check templates in config).
    pub fn render_with(&self, name: &str, id: &str) -> String {
        fn text_of<'a>(part: &'a Part, name: &'a str, id: &'a str) -> &'a str {
            match part {
                Part::Literal(text) => text.as_str(),
                Part::Name => name,
                Part::Id => id,
            }
        }
        let part = |p| text_of(p, name, id);
        // Sized first: one allocation per rendered name (this runs once per instance and rule).
        let mut text = String::with_capacity(self.parts.iter().map(|p| part(p).len()).sum());
        for p in &self.parts {
            text.push_str(part(p));
        }
        text
    }
}

impl NameTemplate {
    /// True when some instance could render to `text`: each placeholder stands for one or
    /// more characters other than `.` (so `{name}.example.com.` never matches a name two
    /// labels deeper). Used to recognise objects a per-instance rule manages.
    pub fn matches(&self, text: &str) -> bool {
        fn rest_matches(parts: &[Part], text: &str) -> bool {
            match parts.split_first() {
                None => text.is_empty(),
                Some((Part::Literal(lit), rest)) => text
                    .strip_prefix(lit.as_str())
                    .is_some_and(|after| rest_matches(rest, after)),
                Some((_, rest)) => {
                    let longest = text.find('.').unwrap_or(text.len());
                    (1..=longest).any(|len| rest_matches(rest, &text[len..]))
                }
            }
        }
        rest_matches(&self.parts, text)
    }
}

impl fmt::Display for NameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        let t = NameTemplate::parse("{name}-{id}.example.com.").unwrap();
        assert!(t.is_per_instance());
        assert_eq!(t.render_with("web-01", "i-1"), "web-01-i-1.example.com.");
        let fixed = NameTemplate::parse("www.example.com.").unwrap();
        assert!(!fixed.is_per_instance());
        assert_eq!(fixed.render_with("x", "y"), "www.example.com.");
    }

    #[test]
    fn matches_what_it_could_render() {
        let t = NameTemplate::parse("{name}.example.com.").unwrap();
        assert!(t.matches("web-01.example.com."));
        assert!(!t.matches("a.web-01.example.com."));
        assert!(!t.matches(".example.com."));
        assert!(!t.matches("web-01.example.org."));
        let t = NameTemplate::parse("ipd-{name}-{id}").unwrap();
        assert!(t.matches("ipd-web-i-1"));
        assert!(!t.matches("web-01"));
        assert!(NameTemplate::parse("{name}").unwrap().matches("backup"));
        assert!(
            NameTemplate::parse("www.example.com.")
                .unwrap()
                .matches("www.example.com.")
        );
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(
            NameTemplate::parse("{nam}.example.com.")
                .unwrap_err()
                .contains("{nam}")
        );
        assert!(NameTemplate::parse("{name.example.com.").is_err());
        assert!(NameTemplate::parse("name}.example.com.").is_err());
    }
}
