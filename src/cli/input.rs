//! The DATA arguments of `put` and `encrypt` turned into a secret's JSON object
//! ([`parse_data`]), reading `@FILE` and `-` through [`Inputs`] ([`StdInputs`] outside
//! tests).
//!
//! Invariants:
//! - DATA is either `KEY=VALUE` pairs or exactly one whole JSON object, as `vault kv put`
//!   reads it; a pair's value is a string, taken exactly as given (a file's or stdin's text,
//!   trailing newline included).
//! - Everything is read before any request (the dispatcher calls this before connecting), so
//!   a bad argument fails without touching a server; stdin is read at most once.
//! - An error names the argument by position and key, never by value (a value may be a
//!   secret), and says why; values that are not UTF-8 text are refused, not mangled.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use super::CliError;

/// Where [`parse_data`] reads `@FILE` and `-` from (a trait, so that its tests need neither
/// files nor stdin).
pub trait Inputs {
    fn file(&mut self, path: &Path) -> std::io::Result<Vec<u8>>;
    fn stdin(&mut self) -> std::io::Result<Vec<u8>>;
}

/// The real files and stdin.
pub struct StdInputs;

impl Inputs for StdInputs {
    fn file(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn stdin(&mut self) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// The DATA arguments of `put` and `encrypt` as the secret's object, as `vault kv put` reads
/// them: either `KEY=VALUE` pairs (VALUE `@FILE`: the file's text, exactly; `-`: stdin's;
/// `\@…` and `\-`: a literal `@…` or `-`), or exactly one whole JSON object — inline
/// (`{…}`), `@FILE`, or `-` for stdin. Pair values are strings. An error names the argument
/// (by position and key, never by value: it may be a secret) and says why.
pub fn parse_data(
    args: &[String],
    inputs: &mut dyn Inputs,
) -> Result<Map<String, Value>, CliError> {
    let whole = |a: &str| a == "-" || a.starts_with('@') || a.trim_start().starts_with('{');
    if let [one] = args {
        if whole(one) {
            let (what, bytes) = match one.as_str() {
                "-" => (
                    "stdin".to_string(),
                    inputs
                        .stdin()
                        .map_err(|e| CliError::Usage(format!("reading stdin: {e}")))?,
                ),
                a => match a.strip_prefix('@') {
                    Some(f) => (a.to_string(), read_file(inputs, f, "DATA")?),
                    None => ("DATA".to_string(), a.as_bytes().to_vec()),
                },
            };
            return match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(o)) => Ok(o),
                Ok(_) => Err(CliError::Usage(format!("{what} is JSON but not an object"))),
                Err(e) => Err(CliError::Usage(format!(
                    "{what} is not a JSON object ({e}); for pairs write KEY=VALUE"
                ))),
            };
        }
    }
    let mut data = Map::new();
    let mut stdin_by: Option<usize> = None;
    for (i, a) in args.iter().enumerate() {
        let n = i + 1;
        let Some((key, value)) = a.split_once('=') else {
            return Err(CliError::Usage(if whole(a) {
                format!(
                    "DATA argument {n}: a whole JSON object ({{…}}, @FILE or -) must be the \
                     only DATA argument"
                )
            } else {
                format!(
                    "DATA argument {n} has no '=': write KEY=VALUE, KEY=@FILE or KEY=-, or \
                     give one JSON object"
                )
            }));
        };
        if key.is_empty() {
            return Err(CliError::Usage(format!(
                "DATA argument {n} has an empty key before '='"
            )));
        }
        let who = format!("DATA argument {n} (key '{key}')");
        let value = if value == "-" {
            if let Some(m) = stdin_by {
                return Err(CliError::Usage(format!(
                    "{who}: stdin is already read by argument {m}; only one value can be -"
                )));
            }
            stdin_by = Some(n);
            let bytes = inputs
                .stdin()
                .map_err(|e| CliError::Usage(format!("{who}: reading stdin: {e}")))?;
            text(bytes, &who, "stdin")?
        } else if let Some(f) = value.strip_prefix('@') {
            let bytes = read_file(inputs, f, &who)?;
            text(bytes, &who, &format!("@{f}"))?
        } else if let Some(rest) = value
            .strip_prefix('\\')
            .filter(|r| r.starts_with('@') || *r == "-")
        {
            rest.to_string()
        } else {
            value.to_string()
        };
        if data.insert(key.to_string(), Value::String(value)).is_some() {
            return Err(CliError::Usage(format!("{who}: key given twice")));
        }
    }
    Ok(data)
}

/// `--custom KEY=VALUE` arguments as a custom metadata map (split at the first `=`; the
/// server checks the limits). A repeated key or a missing `=` is refused, naming the
/// argument, never the value.
pub fn parse_custom(
    args: &[String],
) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    let mut out = std::collections::BTreeMap::new();
    for (i, a) in args.iter().enumerate() {
        let n = i + 1;
        let Some((key, value)) = a.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--custom argument {n} has no '=': write KEY=VALUE"
            )));
        };
        if out.insert(key.to_string(), value.to_string()).is_some() {
            return Err(CliError::Usage(format!(
                "--custom argument {n}: key '{key}' is given twice"
            )));
        }
    }
    Ok(out)
}

fn read_file(inputs: &mut dyn Inputs, file: &str, who: &str) -> Result<Vec<u8>, CliError> {
    if file.is_empty() {
        return Err(CliError::Usage(format!("{who}: '@' needs a file name")));
    }
    inputs
        .file(Path::new(file))
        .map_err(|e| CliError::Usage(format!("{who}: cannot read {file}: {e}")))
}

fn text(bytes: Vec<u8>, who: &str, from: &str) -> Result<String, CliError> {
    String::from_utf8(bytes).map_err(|_| {
        CliError::Usage(format!(
            "{who}: {from} is not UTF-8 text (base64-encode binary values first)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    /// Files and stdin from memory; counts stdin reads.
    #[derive(Default)]
    struct Fake {
        files: HashMap<PathBuf, Vec<u8>>,
        stdin: Vec<u8>,
        stdin_reads: usize,
    }

    impl Inputs for Fake {
        fn file(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
            self.files
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
        fn stdin(&mut self) -> std::io::Result<Vec<u8>> {
            self.stdin_reads += 1;
            Ok(std::mem::take(&mut self.stdin))
        }
    }

    fn parse(args: &[&str], fake: &mut Fake) -> Result<Value, String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse_data(&args, fake)
            .map(Value::Object)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        let mut f = Fake::default();
        assert_eq!(
            parse(&["user=app", "url=a=b?c=d", "empty="], &mut f).unwrap(),
            serde_json::json!({"user": "app", "url": "a=b?c=d", "empty": ""})
        );
        assert_eq!(f.stdin_reads, 0);
    }

    #[test]
    fn values_come_from_files_and_stdin_exactly() {
        let mut f = Fake {
            files: [(PathBuf::from("cert.pem"), b"-----BEGIN\nx\n".to_vec())].into(),
            stdin: b"s3cret\n".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            parse(
                &["cert=@cert.pem", "password=-", "at=\\@home", "dash=\\-"],
                &mut f
            )
            .unwrap(),
            serde_json::json!({
                "cert": "-----BEGIN\nx\n",
                "password": "s3cret\n",
                "at": "@home",
                "dash": "-",
            })
        );
        assert_eq!(f.stdin_reads, 1);
    }

    #[test]
    fn a_whole_object_comes_inline_from_a_file_or_stdin() {
        let mut f = Fake {
            files: [(PathBuf::from("d.json"), br#"{"n": 1, "s": "x"}"#.to_vec())].into(),
            stdin: br#"{"from": "stdin"}"#.to_vec(),
            ..Default::default()
        };
        let want = serde_json::json!({"n": 1, "s": "x"});
        assert_eq!(parse(&["@d.json"], &mut f).unwrap(), want);
        assert_eq!(parse(&[r#" {"n": 1, "s": "x"}"#], &mut f).unwrap(), want);
        assert_eq!(
            parse(&["-"], &mut f).unwrap(),
            serde_json::json!({"from": "stdin"})
        );
    }

    #[test]
    fn bad_arguments_say_which_and_why_without_the_value() {
        let mut f = Fake {
            stdin: b"x".to_vec(),
            ..Default::default()
        };
        let e = parse(&["user=app", "hunter2"], &mut f).unwrap_err();
        assert!(e.contains("argument 2") && e.contains("no '='"), "{e}");
        assert!(!e.contains("hunter2"), "the value leaked: {e}");
        let e = parse(&["=v"], &mut f).unwrap_err();
        assert!(e.contains("argument 1") && e.contains("empty key"), "{e}");
        let e = parse(&["a=1", "a=2"], &mut f).unwrap_err();
        assert!(e.contains("key 'a'") && e.contains("twice"), "{e}");
        let e = parse(&["a=-", "b=-"], &mut f).unwrap_err();
        assert!(
            e.contains("argument 2") && e.contains("already read by argument 1"),
            "{e}"
        );
        let e = parse(&["a=@missing.pem"], &mut f).unwrap_err();
        assert!(
            e.contains("key 'a'") && e.contains("cannot read missing.pem"),
            "{e}"
        );
        let e = parse(&["a=1", "@d.json"], &mut f).unwrap_err();
        assert!(e.contains("only DATA argument"), "{e}");
        let e = parse(&["{not json"], &mut f).unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
        let e = parse(&["[1, 2]"], &mut f).unwrap_err();
        assert!(e.contains("no '='"), "{e}");
        let e = parse(&[r#"{"a": 1}"#, "b=2"], &mut f).unwrap_err();
        assert!(e.contains("only DATA argument"), "{e}");
    }

    #[test]
    fn custom_metadata_pairs_split_at_the_first_equals_sign() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = parse_custom(&args(&["owner=team-a", "url=https://x/?a=b"])).unwrap();
        assert_eq!(m["owner"], "team-a");
        assert_eq!(m["url"], "https://x/?a=b");
        let e = parse_custom(&args(&["a=1", "s3cret"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("argument 2") && e.contains("no '='"), "{e}");
        assert!(!e.contains("s3cret"), "the value leaked: {e}");
        let e = parse_custom(&args(&["a=1", "a=2"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("key 'a'") && e.contains("twice"), "{e}");
    }

    #[test]
    fn binary_file_values_are_refused() {
        let mut f = Fake {
            files: [(PathBuf::from("k.der"), vec![0xff, 0xfe, 0])].into(),
            ..Default::default()
        };
        let e = parse(&["key=@k.der"], &mut f).unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
    }
}
