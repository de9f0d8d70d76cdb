//! TSIG keys (RFC 8945): the shared secret that signs every DNS message ipdrift sends to an
//! RFC 2136 server. Pure: parsing and key handling, no I/O.
//!
//! The secret never leaves this module in readable form: [`TsigKey`] keeps it private,
//! its `Debug` and `Display` leave it out, and no error built here quotes it (nor any text
//! that stood where the secret belongs in a key file).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hickory_proto::rr::{Name, TSigner};

use crate::model::DnsName;
use crate::validate::{self, Invalid};

/// How far apart (seconds) the signer's and the server's clocks may be, RFC 8945 §5.2.3.
/// 300 s is the value the RFC recommends and what BIND's tools use.
pub(crate) const FUDGE_SECONDS: u16 = 300;

/// The MAC algorithms ipdrift signs with: the HMAC-SHA2 family that RFC 8945 §6 requires
/// or recommends, and that `tsig-keygen` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    const ALL: [TsigAlgorithm; 3] = [Self::HmacSha256, Self::HmacSha384, Self::HmacSha512];

    /// Parses an algorithm name as BIND writes it (`hmac-sha256`), ignoring case and a
    /// trailing dot (the name is a domain name on the wire).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let wanted = text.strip_suffix('.').unwrap_or(text);
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                Invalid(format!(
                    "unknown TSIG algorithm {}; use one of hmac-sha256, hmac-sha384, hmac-sha512",
                    validate::printable(text)
                ))
            })
    }

    /// The algorithm's name as BIND and RFC 8945 §6 spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    fn to_hickory(self) -> hickory_proto::rr::rdata::tsig::TsigAlgorithm {
        use hickory_proto::rr::rdata::tsig::TsigAlgorithm as Hickory;
        match self {
            Self::HmacSha256 => Hickory::HmacSha256,
            Self::HmacSha384 => Hickory::HmacSha384,
            Self::HmacSha512 => Hickory::HmacSha512,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named TSIG key. The secret is private and left out of `Debug` and `Display`, so a key
/// can be logged, put in an error or kept in a struct that derives `Debug`.
#[derive(Clone)]
pub struct TsigKey {
    /// The key's name; it must match the name in the server's `key "NAME" { … }` clause.
    pub name: DnsName,
    pub algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl TsigKey {
    /// Builds a key from its name, algorithm and base64 secret (surrounding whitespace, such
    /// as the newline at the end of a secret file, is ignored).
    pub fn from_base64(
        name: &str,
        algorithm: TsigAlgorithm,
        secret_base64: &str,
    ) -> Result<Self, Invalid> {
        let name = validate::dns_name(name)
            .map_err(|Invalid(why)| Invalid(format!("TSIG key name: {why}")))?;
        let shown = display_name(&name);
        let secret_base64 = secret_base64.trim();
        if secret_base64.is_empty() {
            return Err(Invalid(format!(
                "the secret of TSIG key '{shown}' is empty; generate one with `tsig-keygen -a {algorithm} {shown}`"
            )));
        }
        // The decoder's error names the offending byte and offset: part of the secret.
        let secret = BASE64.decode(secret_base64).map_err(|_| {
            Invalid(format!(
                "the secret of TSIG key '{shown}' is not valid base64; copy it whole from the server's key file (the text between the quotes after `secret`)"
            ))
        })?;
        Ok(Self {
            name,
            algorithm,
            secret,
        })
    }

    /// The signer that hickory uses to sign messages and verify answers with this key.
    pub fn signer(&self) -> TSigner {
        // `DnsName` is a validated absolute name, which hickory always accepts.
        let signer_name =
            Name::from_ascii(self.name.as_str()).expect("a validated DNS name is a valid Name");
        // Every `TsigAlgorithm` is one that hickory implements, the only reason `new` fails.
        TSigner::new(
            self.secret.clone(),
            self.algorithm.to_hickory(),
            signer_name,
            FUDGE_SECONDS,
        )
        .expect("hickory implements every HMAC-SHA2 TSIG algorithm")
    }

    /// The key's name as the server's config writes it (`ipdrift-key`, no trailing dot), for
    /// errors that say what to put in named.conf.
    pub fn name_in_config(&self) -> &str {
        display_name(&self.name)
    }
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `'ipdrift-key' (hmac-sha256)`: the name as written in the server's config, and the
/// algorithm. Never the secret.
impl fmt::Display for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' ({})", self.name_in_config(), self.algorithm)
    }
}

/// The key name without the trailing dot, as `key "NAME"` clauses usually write it.
fn display_name(name: &DnsName) -> &str {
    name.as_str().strip_suffix('.').unwrap_or(name.as_str())
}

/// Parses the key file that `tsig-keygen -a hmac-sha256 NAME` writes:
///
/// ```text
/// key "NAME" {
///     algorithm hmac-sha256;
///     secret "BASE64";
/// };
/// ```
///
/// Comments (`#`, `//`, `/* */`) and any layout are accepted. The file must hold exactly one
/// key. Errors name lines, never the secret.
pub fn parse_key_file(text: &str) -> Result<TsigKey, Invalid> {
    let tokens = tokenize(text)?;
    let mut tokens = tokens.iter();
    let mut keys = Vec::new();
    while let Some(token) = tokens.next() {
        match token.kind {
            TokenKind::Word(word) if word.eq_ignore_ascii_case("key") => {
                keys.push(parse_key_clause(token.line, &mut tokens)?);
            }
            _ => {
                return Err(Invalid(format!(
                    "line {}: expected `key \"NAME\" {{ algorithm …; secret \"…\"; }};` as written by tsig-keygen",
                    token.line
                )));
            }
        }
    }
    match keys.len() {
        1 => Ok(keys.pop().expect("one key")),
        0 => Err(Invalid(
            "no `key \"NAME\" { … };` clause found; create the file with `tsig-keygen -a hmac-sha256 NAME`"
                .into(),
        )),
        n => Err(Invalid(format!(
            "the file holds {n} keys ({}); it must hold exactly one, the key ipdrift signs with",
            keys.iter()
                .map(|key| format!("'{}'", display_name(&key.name)))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The inside of one `key NAME { … };` clause, after the `key` keyword on line `line`.
fn parse_key_clause<'a>(
    line: usize,
    tokens: &mut impl Iterator<Item = &'a Token<'a>>,
) -> Result<TsigKey, Invalid> {
    let name = match tokens.next() {
        Some(Token {
            kind: TokenKind::Quoted(name) | TokenKind::Word(name),
            ..
        }) => *name,
        _ => {
            return Err(Invalid(format!(
                "line {line}: `key` must be followed by the key's name, e.g. key \"ipdrift-key\""
            )));
        }
    };
    expect(tokens, TokenKind::Open, line, "`{` after the key name")?;
    let mut algorithm = None;
    let mut secret_base64 = None;
    loop {
        let Some(token) = tokens.next() else {
            return Err(Invalid(format!(
                "line {line}: the key clause is not closed with `}};`"
            )));
        };
        match token.kind {
            TokenKind::Close => break,
            TokenKind::Word(word) if word.eq_ignore_ascii_case("algorithm") => {
                let text = match tokens.next() {
                    Some(Token {
                        kind: TokenKind::Word(text) | TokenKind::Quoted(text),
                        ..
                    }) => *text,
                    _ => {
                        return Err(Invalid(format!(
                            "line {}: `algorithm` must be followed by its name, e.g. hmac-sha256",
                            token.line
                        )));
                    }
                };
                algorithm = Some(
                    TsigAlgorithm::parse(text)
                        .map_err(|Invalid(why)| Invalid(format!("line {}: {why}", token.line)))?,
                );
                expect(
                    tokens,
                    TokenKind::Semicolon,
                    token.line,
                    "`;` after the algorithm",
                )?;
            }
            TokenKind::Word(word) if word.eq_ignore_ascii_case("secret") => {
                // Whatever follows `secret` is (part of) the secret: never quote it.
                match tokens.next() {
                    Some(Token {
                        kind: TokenKind::Quoted(text),
                        ..
                    }) => secret_base64 = Some(*text),
                    _ => {
                        return Err(Invalid(format!(
                            "line {}: the secret must be a quoted string: secret \"BASE64\";",
                            token.line
                        )));
                    }
                }
                expect(
                    tokens,
                    TokenKind::Semicolon,
                    token.line,
                    "`;` after the secret",
                )?;
            }
            _ => {
                return Err(Invalid(format!(
                    "line {}: only `algorithm …;` and `secret \"…\";` belong inside a key clause",
                    token.line
                )));
            }
        }
    }
    expect(
        tokens,
        TokenKind::Semicolon,
        line,
        "`;` after the key clause's `}`",
    )?;
    let (Some(algorithm), Some(secret_base64)) = (algorithm, secret_base64) else {
        return Err(Invalid(format!(
            "line {line}: key {} needs both `algorithm …;` and `secret \"…\";`",
            validate::printable(name)
        )));
    };
    TsigKey::from_base64(name, algorithm, secret_base64)
        .map_err(|Invalid(why)| Invalid(format!("line {line}: {why}")))
}

/// Takes the next token and checks that it is `wanted`; the error describes the position,
/// not the token found (which could be the secret).
fn expect<'a>(
    tokens: &mut impl Iterator<Item = &'a Token<'a>>,
    wanted: TokenKind<'static>,
    line: usize,
    what: &str,
) -> Result<(), Invalid> {
    match tokens.next() {
        Some(token) if token.kind == wanted => Ok(()),
        Some(token) => Err(Invalid(format!("line {}: expected {what}", token.line))),
        None => Err(Invalid(format!(
            "line {line}: expected {what}, but the file ends"
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind<'a> {
    Word(&'a str),
    Quoted(&'a str),
    Open,
    Close,
    Semicolon,
}

struct Token<'a> {
    kind: TokenKind<'a>,
    line: usize,
}

/// Splits named.conf syntax into tokens, dropping whitespace and comments.
fn tokenize(text: &str) -> Result<Vec<Token<'_>>, Invalid> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let token_line = line;
        let (kind, consumed) = match c {
            '\n' => {
                line += 1;
                (None, 1)
            }
            c if c.is_whitespace() => (None, c.len_utf8()),
            '#' => (None, rest.find('\n').unwrap_or(rest.len())),
            '/' if rest.starts_with("//") => (None, rest.find('\n').unwrap_or(rest.len())),
            '/' if rest.starts_with("/*") => {
                let Some(end) = rest.find("*/") else {
                    return Err(Invalid(format!(
                        "line {token_line}: a /* comment is not closed"
                    )));
                };
                line += rest[..end].matches('\n').count();
                (None, end + 2)
            }
            '{' => (Some(TokenKind::Open), 1),
            '}' => (Some(TokenKind::Close), 1),
            ';' => (Some(TokenKind::Semicolon), 1),
            '"' => {
                let Some(end) = rest[1..].find('"') else {
                    return Err(Invalid(format!(
                        "line {token_line}: a quoted string is not closed"
                    )));
                };
                let quoted = &rest[1..1 + end];
                line += quoted.matches('\n').count();
                (Some(TokenKind::Quoted(quoted)), end + 2)
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"'))
                    .unwrap_or(rest.len());
                (Some(TokenKind::Word(&rest[..end])), end)
            }
        };
        if let Some(kind) = kind {
            tokens.push(Token {
                kind,
                line: token_line,
            });
        }
        rest = &rest[consumed..];
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "6fLGcV97PuPNuGGSjNxVG8JLZvjInc+xJr1fYtITveo=";

    fn keygen_output() -> String {
        format!("key \"ipdrift-key\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET}\";\n}};\n")
    }

    #[test]
    fn algorithms_parse_and_unknown_ones_list_the_allowed() {
        assert_eq!(
            TsigAlgorithm::parse("hmac-sha256"),
            Ok(TsigAlgorithm::HmacSha256)
        );
        assert_eq!(
            TsigAlgorithm::parse("HMAC-SHA384."),
            Ok(TsigAlgorithm::HmacSha384)
        );
        assert_eq!(
            TsigAlgorithm::parse("hmac-sha512"),
            Ok(TsigAlgorithm::HmacSha512)
        );
        let Invalid(why) = TsigAlgorithm::parse("hmac-md5").unwrap_err();
        assert!(why.contains("\"hmac-md5\""), "{why}");
        assert!(
            why.contains("hmac-sha256, hmac-sha384, hmac-sha512"),
            "{why}"
        );
    }

    #[test]
    fn tsig_keygen_output_parses() {
        let key = parse_key_file(&keygen_output()).unwrap();
        assert_eq!(key.name.as_str(), "ipdrift-key.");
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(key.secret, BASE64.decode(SECRET).unwrap());
    }

    #[test]
    fn comments_and_layout_are_tolerated() {
        let text = format!(
            "# generated for ipdrift\n// by tsig-keygen\n/* a\n block */ key ipdrift-key{{secret \"{SECRET}\" ; # the secret\n algorithm \"HMAC-SHA512\";}}\n;"
        );
        let key = parse_key_file(&text).unwrap();
        assert_eq!(key.name.as_str(), "ipdrift-key.");
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha512);
    }

    #[test]
    fn broken_key_files_are_refused_with_a_line_number() {
        let cases = [
            ("", "no `key"),
            ("key \"k\" { algorithm hmac-sha256; };", "needs both"),
            (
                "key \"k\" {\n algorithm hmac-md5;\n secret \"AAAA\";\n};",
                "line 2: unknown TSIG algorithm",
            ),
            ("key \"k\" { secret \"AAAA\" }", "line 1: expected `;`"),
            ("options { };", "line 1: expected `key"),
            ("key \"k\" {\n secret \"AAAA", "line 2: a quoted string"),
            (
                "key \"a\" { algorithm hmac-sha256; secret \"AAAA\"; };\nkey \"b\" { algorithm hmac-sha256; secret \"AAAA\"; };",
                "2 keys ('a', 'b')",
            ),
        ];
        for (text, expected) in cases {
            let Invalid(why) = parse_key_file(text).unwrap_err();
            assert!(why.contains(expected), "{text:?} gave {why:?}");
        }
    }

    #[test]
    fn from_base64_trims_and_refuses_bad_secrets() {
        let key = TsigKey::from_base64(
            "ipdrift-key",
            TsigAlgorithm::HmacSha256,
            &format!("{SECRET}\n"),
        )
        .unwrap();
        assert_eq!(key.secret, BASE64.decode(SECRET).unwrap());
        assert!(TsigKey::from_base64("ipdrift-key", TsigAlgorithm::HmacSha256, " \n").is_err());
        assert!(TsigKey::from_base64("bad key", TsigAlgorithm::HmacSha256, SECRET).is_err());
    }

    #[test]
    fn signer_carries_name_algorithm_and_fudge() {
        let signer = parse_key_file(&keygen_output()).unwrap().signer();
        assert_eq!(signer.signer_name().to_ascii(), "ipdrift-key.");
        assert_eq!(
            *signer.algorithm(),
            hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256
        );
        assert_eq!(signer.fudge(), 300);
        assert_eq!(signer.key(), BASE64.decode(SECRET).unwrap());
    }

    #[test]
    fn the_secret_never_appears_in_debug_display_or_errors() {
        let key = parse_key_file(&keygen_output()).unwrap();
        let mut texts = vec![format!("{key:?}"), key.to_string()];
        // Secrets that are nearly right, in the places a hurried edit puts them.
        let almost = format!("{SECRET}!");
        for broken in [
            format!("key \"k\" {{ algorithm hmac-sha256; secret \"{almost}\"; }};"),
            format!("key \"k\" {{ algorithm hmac-sha256; secret {SECRET}; }};"),
            format!("key \"k\" {{ algorithm hmac-sha256; secret \"{SECRET}\" }};"),
            format!("key \"k\" {{ algorithm hmac-sha256; secret = \"{SECRET}\"; }};"),
            format!("key \"k\" {{ algorithm hmac-sha256; \"{SECRET}\"; }};"),
            SECRET.to_string(),
        ] {
            texts.push(parse_key_file(&broken).unwrap_err().to_string());
        }
        texts.push(
            TsigKey::from_base64("k", TsigAlgorithm::HmacSha256, &almost)
                .unwrap_err()
                .to_string(),
        );
        let fragment = &SECRET[..12];
        for text in texts {
            assert!(!text.contains(fragment), "secret leaked: {text}");
        }
        assert_eq!(key.to_string(), "'ipdrift-key' (hmac-sha256)");
    }
}
