//! The shared checker: collects every problem of a config file with its line and field,
//! and hands each kind its own table ([`Fragment`]) with the TOML spans intact, so that a
//! kind's errors are as precise as the driver's. Pure: no file or network access.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use url::Url;

use super::rules::{RawSelect, Selector};
use super::secret_keys::{SecretAt, SecretKeys};
use crate::model::AddressKind;
use crate::template::NameTemplate;
use crate::validate;

/// The longest duration a config may give: a century. Longer values are typing mistakes
/// and overflow the clock arithmetic of the controller.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why a kind that needs the AWS SDK is refused by a build without it.
pub const WITHOUT_AWS: &str = "ipdrift was built without the aws feature, which this kind needs; \
    rebuild with the default features (`cargo build --release`) or `--features aws`";

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors with their line numbers while the raw config is checked.
pub struct Checker<'a> {
    source: &'a str,
    path: &'a Path,
    pub(crate) errors: Vec<ConfigError>,
    /// Every `[[inventory]]` name seen so far, for `select.source`.
    pub(crate) sources: BTreeSet<String>,
    /// Every `[[dns]]` name, valid or not, for `[[record]] dns`.
    pub(crate) dns_names: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    pub fn new(source: &'a str, path: &'a Path) -> Checker<'a> {
        Checker {
            source,
            path,
            errors: Vec::new(),
            sources: BTreeSet::new(),
            dns_names: BTreeSet::new(),
        }
    }

    /// How many errors were found so far: a section compares it before and after itself.
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The 1-based line of a byte offset.
    pub fn line_at(&self, offset: usize) -> usize {
        let start = offset.min(self.source.len());
        self.source[..start].matches('\n').count() + 1
    }

    pub fn line_of<T>(&self, spanned: &Spanned<T>) -> usize {
        self.line_at(spanned.span().start)
    }

    pub fn error<T>(
        &mut self,
        at: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self.line_of(at);
        self.error_at_line(Some(line), field, message);
    }

    pub fn error_at_line(
        &mut self,
        line: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            path: self.path.to_path_buf(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    /// A TOML or serde error, at the line its span points to.
    pub fn toml_error(&mut self, e: &toml::de::Error, field: impl Into<String>) {
        let line = e.span().map(|span| self.line_at(span.start));
        self.error_at_line(line, field, e.message().trim());
    }

    /// The config file's path, for messages.
    pub fn path(&self) -> &Path {
        self.path
    }

    /// The directory that relative paths in the config are relative to.
    pub fn dir(&self) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).to_path_buf()
    }

    pub fn resolve_path(&self, relative: &str) -> PathBuf {
        self.dir().join(relative)
    }

    /// A humantime duration (`"10s"`, `"1m"`): longer than zero and at most a century.
    pub fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.error(text, field, "must be longer than zero");
                default
            }
            Ok(d) if d > MAX_DURATION => {
                self.error(
                    text,
                    field,
                    format!(
                        "{:?} is longer than a century; write e.g. \"10s\" or \"1m\"",
                        text.get_ref()
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.error(
                    text,
                    field,
                    format!(
                        "{:?} is not a duration ({e}); write e.g. \"10s\" or \"1m\"",
                        text.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// One of a fixed set of words → its value. An unknown word is an error that lists
    /// the words, worded `unknown {what} "x"; use "a" or "b"`.
    pub fn choice<T: Copy>(
        &mut self,
        value: &Spanned<String>,
        field: &str,
        what: &str,
        words: &[(&str, T)],
    ) -> Option<T> {
        let text = value.get_ref().as_str();
        if let Some((_, v)) = words.iter().find(|(word, _)| *word == text) {
            return Some(*v);
        }
        let quoted: Vec<String> = words.iter().map(|(w, _)| format!("\"{w}\"")).collect();
        let list = match quoted.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.error(value, field, format!("unknown {what} {text:?}; use {list}"));
        None
    }

    /// Like [`Self::choice`] for an optional key: absent gives `default`, and so does a
    /// mistake (after reporting it).
    pub fn choice_or<T: Copy>(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        what: &str,
        words: &[(&str, T)],
        default: T,
    ) -> T {
        value
            .as_ref()
            .and_then(|v| self.choice(v, field, what, words))
            .unwrap_or(default)
    }

    pub fn address_kind(&mut self, value: &Spanned<String>, field: &str) -> AddressKind {
        let text = value.get_ref();
        match text.as_str() {
            "public_ipv4" => AddressKind::PublicIpv4,
            "private_ipv4" => AddressKind::PrivateIpv4,
            "ipv6" => AddressKind::Ipv6,
            other => {
                self.error(
                    value,
                    field,
                    format!("unknown address {other:?}; use public_ipv4, private_ipv4 or ipv6"),
                );
                AddressKind::PublicIpv4
            }
        }
    }

    /// A rule's `select`: tags, and a source that must be an `[[inventory]]`'s name.
    pub fn selector(&mut self, value: &Option<Spanned<RawSelect>>, field: &str) -> Selector {
        let Some(select) = value else {
            return Selector::default();
        };
        let raw = select.get_ref();
        if let Some(source) = &raw.source
            && !self.sources.contains(source)
        {
            self.error(
                select,
                format!("{field}.source"),
                format!("no [[inventory]] is named {source:?}"),
            );
        }
        Selector {
            tags: raw.tags.clone(),
            source: raw.source.clone(),
        }
    }

    pub fn template(&mut self, value: &Spanned<String>, field: &str) -> Option<NameTemplate> {
        match NameTemplate::parse(value.get_ref()) {
            Ok(t) => Some(t),
            Err(message) => {
                self.error(value, field, message);
                None
            }
        }
    }

    /// Records `name` as used; reports a duplicate.
    pub fn unique(&mut self, seen: &mut BTreeSet<String>, name: &Spanned<String>, what: &str) {
        if !seen.insert(name.get_ref().clone()) {
            self.error(
                name,
                format!("{what}.name"),
                format!("{:?} is used twice; names must be unique", name.get_ref()),
            );
        }
    }
}

/// One kind's table (an `[[inventory]]`, a `[[dns]]`, a `[[haproxy]]`) without the keys the
/// driver took (`name`, `kind`, `zone`), with its spans, for the kind to check.
pub struct Fragment<'c, 'a> {
    pub checker: &'c mut Checker<'a>,
    /// How errors name the table, e.g. `inventory "web"`.
    pub field: String,
    /// How errors name the kind, e.g. `a file inventory`.
    pub what: String,
    /// The whole table: errors about a missing key point at its first line.
    pub span: std::ops::Range<usize>,
    /// The `kind` value, for errors about the kind itself.
    pub kind_span: std::ops::Range<usize>,
    table: DeTable<'a>,
}

impl<'c, 'a> Fragment<'c, 'a> {
    pub(crate) fn new(
        checker: &'c mut Checker<'a>,
        field: String,
        what: String,
        span: std::ops::Range<usize>,
        table: DeTable<'a>,
    ) -> Fragment<'c, 'a> {
        Fragment {
            checker,
            field,
            what,
            kind_span: span.clone(),
            span,
            table,
        }
    }

    /// `field.key`, for errors about one key.
    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.field)
    }

    /// An error at one key's value: `field.key: message`.
    pub fn error_at<T>(&mut self, at: &Spanned<T>, key: &str, message: impl Into<String>) {
        let field = self.key(key);
        self.checker.error(at, field, message);
    }

    /// A key that must be there is not: the error points at the table.
    pub fn missing(&mut self, key: &str, message: impl Into<String>) {
        let field = self.key(key);
        self.error(field, message);
    }

    /// Where one of the kind's secrets is: exactly one of two keys (see [`SecretKeys`]).
    pub fn secret(
        &mut self,
        keys: &SecretKeys<'_>,
        file: Option<&Spanned<String>>,
        env: Option<&Spanned<String>>,
    ) -> Option<SecretAt> {
        let line = self.checker.line_at(self.span.start);
        keys.check(self.checker, &self.field, file, env, line)
    }

    /// A cloud API's base URL (`endpoint`), or `default` (the provider's own API).
    pub fn endpoint(&mut self, value: &Option<Spanned<String>>, default: &str) -> Url {
        let default = || Url::parse(default).expect("the default endpoint is a URL");
        let Some(text) = value else {
            return default();
        };
        validate::api_endpoint(text.get_ref()).unwrap_or_else(|message| {
            self.error_at(text, "endpoint", message);
            default()
        })
    }

    /// An error at the `kind` key: this build cannot serve the kind.
    pub fn kind_error(&mut self, message: impl Into<String>) {
        let line = self.checker.line_at(self.kind_span.start);
        let field = self.key("kind");
        self.checker.error_at_line(Some(line), field, message);
    }

    /// An error at the table's first line (a key is missing, or keys conflict).
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let line = self.checker.line_at(self.span.start);
        self.checker.error_at_line(Some(line), field, message);
    }

    /// Deserializes the table into the kind's serde struct. A key that the struct does not
    /// have is reported as not taken by this kind (naming the keys it does take) and left
    /// out, so that the rest is still checked; `None` when the table does not fit the
    /// struct otherwise (the error is reported).
    pub fn parse<T: Deserialize<'a>>(&mut self) -> Option<T> {
        let takes = fields_of::<T>();
        let mut strays: Vec<(usize, String)> = self
            .table
            .keys()
            .filter(|k| !takes.contains(&k.get_ref().as_ref()))
            .map(|k| (k.span().start, k.get_ref().to_string()))
            .collect();
        strays.sort();
        for (offset, key) in &strays {
            let line = self.checker.line_at(*offset);
            let message = format!(
                "{} does not take `{key}`; its keys are {}",
                self.what,
                takes.join(", ")
            );
            self.checker
                .error_at_line(Some(line), self.key(key), message);
            self.table.remove(key.as_str());
        }
        let table = Spanned::new(self.span.clone(), DeValue::Table(self.table.clone()));
        match T::deserialize(ValueDeserializer::from(table)) {
            Ok(value) => Some(value),
            Err(e) => {
                let field = self.field.clone();
                self.checker.toml_error(&e, field);
                None
            }
        }
    }
}

/// The field names of a serde struct, as its derived `Deserialize` announces them.
pub fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl fmt::Display for Found {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("fields")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: fmt::Display>(_: M) -> Found {
            Found(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Fields {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Fields) {
        Err(Found(fields)) => fields,
        Ok(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        path: Option<Spanned<String>>,
        port: Option<Spanned<i64>>,
    }

    fn fragment_errors(text: &str) -> (Option<Sample>, Vec<ConfigError>) {
        let path = Path::new("/etc/ipdrift/c.toml");
        let mut checker = Checker::new(text, path);
        let doc = DeTable::parse(text).unwrap();
        let span = doc.span();
        let table = doc.into_inner();
        let mut fragment = Fragment::new(
            &mut checker,
            "inventory \"a\"".into(),
            "a sample inventory".into(),
            span,
            table,
        );
        let parsed = fragment.parse::<Sample>();
        (parsed, checker.errors)
    }

    #[test]
    fn a_fragment_keeps_the_lines_of_its_values() {
        let (parsed, errors) = fragment_errors("path = \"a\"\n\nport = \"eighty\"\n");
        assert!(parsed.is_none());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, Some(3), "{errors:?}");
        assert_eq!(errors[0].field, "inventory \"a\"");
        let (parsed, errors) = fragment_errors("path = \"a\"\nport = 5\n");
        let parsed = parsed.unwrap();
        assert!(errors.is_empty());
        let checker = Checker::new("path = \"a\"\nport = 5\n", Path::new("c"));
        assert_eq!(checker.line_of(parsed.port.as_ref().unwrap()), 2);
    }

    #[test]
    fn keys_a_kind_does_not_take_are_named_with_the_keys_it_does() {
        let (parsed, errors) = fragment_errors("path = \"a\"\ntag = \"x\"\nlabel = 1\n");
        assert!(parsed.is_some(), "the rest is still checked");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].field, "inventory \"a\".tag");
        assert_eq!(errors[0].line, Some(2));
        assert_eq!(
            errors[0].message,
            "a sample inventory does not take `tag`; its keys are path, port"
        );
        assert_eq!(errors[1].line, Some(3));
    }

    #[test]
    fn choices_list_their_words() {
        let text = "x = \"sideways\"\n";
        let mut c = Checker::new(text, Path::new("c"));
        let value = Spanned::new(4..14, "sideways".to_string());
        let words = [("maint", 1), ("delete", 2), ("drain", 3)];
        assert_eq!(c.choice(&value, "f", "removal", &words), None);
        assert_eq!(
            c.errors[0].message,
            "unknown removal \"sideways\"; use \"maint\", \"delete\" or \"drain\""
        );
        let value = Spanned::new(4..14, "drain".to_string());
        assert_eq!(c.choice(&value, "f", "removal", &words), Some(3));
    }

    #[test]
    fn durations_are_bounded() {
        let mut c = Checker::new("", Path::new("c"));
        let huge = Some(Spanned::new(0..1, "200000000000y".to_string()));
        assert_eq!(
            c.duration(&huge, "f", Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert!(
            c.errors[0].message.contains("century")
                || c.errors[0].message.contains("not a duration")
        );
        let zero = Some(Spanned::new(0..1, "0s".to_string()));
        c.duration(&zero, "f", Duration::from_secs(1));
        assert!(c.errors[1].message.contains("longer than zero"));
    }

    #[test]
    fn struct_fields_are_found_from_serde() {
        assert_eq!(fields_of::<Sample>(), ["path", "port"]);
    }
}
