//! Issue 16, "The walk-through is a test": docs/deploy.md's "Try it" step, followed as literally
//! as this machine allows. The settings come from `terraform/terraform.tfvars.example`
//! (`jwt_issuer`, `jwt_audience`, `jwt_alg`, `region`, `jwt_key_parameter_name`); a local
//! `roomcast-local` verifies tokens as the deployment would (same issuer, audience and kind of
//! key, an `openssl rand -base64 48` secret as step 2 makes it). The token command is the one
//! in deploy.md's fenced block, run with only the binary (for `cargo run … --`) and the secret
//! (for `"$(aws ssm get-parameter …)"`, checked to read the tfvars' parameter in its region)
//! substituted; the connection uses the documented URL form (`"$WSS_URL?token=$TOKEN"`) and
//! sends the documented frames: `join` gets `joined`, `message` gets its `ack`, and a second
//! client (the same command with another `--user`) receives the message.
//!
//! When deploy.md or the tfvars example change so that the command would be refused, or the
//! documented form can no longer be followed, this test fails and says which line.
#![cfg(unix)]

mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, bail, ensure};
use process::{Server, openssl};
use roomcast_core::auth::Claims;
use roomcast_protocol_tests::client::{Client, Credentials, frame_type};
use roomcast_protocol_tests::deployment::{Capabilities, Deployment};
use serde_json::Value;

/// The checkout's root (this crate is `infra/local`).
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The string settings of a `.tfvars` file (`name = "value"` lines; comments, numbers, lists
/// and maps are left out: the walk-through needs strings only).
fn tfvars(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once('=')?;
            let value = value.trim().strip_prefix('"')?.strip_suffix('"')?;
            Some((name.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// The fenced code blocks of a Markdown text, each as (first line number, its lines).
fn fenced_blocks(markdown: &str) -> Vec<(usize, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            match open.take() {
                Some(block) => blocks.push(block),
                None => open = Some((i + 2, Vec::new())),
            }
        } else if let Some((_, lines)) = open.as_mut() {
            lines.push(line);
        }
    }
    blocks
}

/// The block's logical lines: a line ending in `\` continues on the next.
fn logical_lines(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in lines {
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One shell word: its text as written, and its value once quotes are removed (`$(…)` and
/// `$NAME` are kept as written).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    raw: String,
    value: String,
}

/// Splits a command line into words the way sh does for what deploy.md writes: white space
/// separates words outside quotes and `$(…)`; single quotes are literal; double quotes group.
fn shell_words(line: &str) -> anyhow::Result<Vec<Word>> {
    let mut words = Vec::new();
    let (mut raw, mut value) = (String::new(), String::new());
    let (mut single, mut double, mut depth) = (false, false, 0usize);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double && depth == 0 => single = !single,
            '"' if !single && depth == 0 => double = !double,
            '$' if !single && chars.peek() == Some(&'(') => {
                depth += 1;
                raw.push(c);
                value.push(c);
                continue;
            }
            ')' if !single && depth > 0 => {
                depth -= 1;
                value.push(c);
            }
            c if c.is_whitespace() && !single && !double && depth == 0 => {
                if !raw.is_empty() {
                    words.push(Word {
                        raw: std::mem::take(&mut raw),
                        value: std::mem::take(&mut value),
                    });
                }
                continue;
            }
            c => value.push(c),
        }
        raw.push(c);
    }
    ensure!(
        !single && !double && depth == 0,
        "unbalanced quotes or $( in {line:?}"
    );
    if !raw.is_empty() {
        words.push(Word { raw, value });
    }
    Ok(words)
}

/// deploy.md's token command: the first logical line in a fenced block that runs
/// `roomcast-local … token` (the AWS walk-through's, "Try it"), with its block's line number.
fn documented_token_command(deploy_md: &str) -> anyhow::Result<(usize, String)> {
    fenced_blocks(deploy_md)
        .into_iter()
        .flat_map(|(first, lines)| {
            logical_lines(&lines)
                .into_iter()
                .map(move |l| (first, l))
                .collect::<Vec<_>>()
        })
        .find(|(_, l)| l.contains("roomcast-local") && l.contains(" token "))
        .context("docs/deploy.md shows no `roomcast-local … token` command in a fenced block")
}

/// The command's arguments after `token`, as `(flag, word)` pairs, with what precedes `token`
/// checked to be a way of running the binary (`cargo run … -p roomcast-local … --` or
/// `roomcast-local`), and a `TOKEN=$(…)` wrapper removed.
fn token_arguments(line: &str) -> anyhow::Result<Vec<(String, Word)>> {
    let line = line.trim();
    let line = match line.strip_prefix("TOKEN=$(") {
        Some(inner) => inner
            .strip_suffix(')')
            .with_context(|| format!("`TOKEN=$(` without its `)`: {line}"))?,
        None => line,
    };
    let words = shell_words(line)?;
    let at = words
        .iter()
        .position(|w| w.value == "token")
        .context("no `token` word")?;
    let runner: Vec<&str> = words[..at].iter().map(|w| w.value.as_str()).collect();
    let binary_only = runner.last().is_some_and(|w| w.ends_with("roomcast-local"));
    let via_cargo = runner.first() == Some(&"cargo")
        && runner.get(1) == Some(&"run")
        && runner.windows(2).any(|w| w == ["-p", "roomcast-local"])
        && runner.last() == Some(&"--");
    ensure!(
        binary_only || via_cargo,
        "`{}` does not run roomcast-local",
        runner.join(" ")
    );
    let mut pairs = Vec::new();
    let mut rest = words[at + 1..].iter();
    while let Some(flag) = rest.next() {
        ensure!(
            flag.value.starts_with("--"),
            "unexpected word {:?} (every option takes a value)",
            flag.raw
        );
        let value = rest
            .next()
            .with_context(|| format!("{} has no value", flag.raw))?;
        pairs.push((flag.value.clone(), value.clone()));
    }
    Ok(pairs)
}

/// The value of `flag` in `pairs`.
fn flag<'a>(pairs: &'a [(String, Word)], flag: &str) -> Option<&'a Word> {
    pairs.iter().find(|(f, _)| f == flag).map(|(_, w)| w)
}

/// deploy.md's connection: the `websocat` line with a `?token=` URL, its URL word as written,
/// and the JSON frames the block sends after it.
fn documented_connection(deploy_md: &str) -> anyhow::Result<(String, Vec<Value>)> {
    for (first, lines) in fenced_blocks(deploy_md) {
        let logical = logical_lines(&lines);
        let Some(at) = logical
            .iter()
            .position(|l| l.trim_start().starts_with("websocat") && l.contains("?token="))
        else {
            continue;
        };
        let words = shell_words(&logical[at])?;
        let url = words
            .iter()
            .find(|w| w.value.contains("?token="))
            .map(|w| w.value.clone())
            .context("no URL word")?;
        let frames = logical[at + 1..]
            .iter()
            .filter(|l| l.trim_start().starts_with('{'))
            .map(|l| {
                serde_json::from_str(l.trim())
                    .with_context(|| format!("deploy.md block at line {first}: {l}"))
            })
            .collect::<anyhow::Result<Vec<Value>>>()?;
        return Ok((url, frames));
    }
    bail!("docs/deploy.md shows no `websocat \"…?token=…\"` connection in a fenced block")
}

/// A deployment at exactly the URL a reader builds from deploy.md.
struct DocumentedUrl(String);

#[async_trait::async_trait]
impl Deployment for DocumentedUrl {
    fn ws_url(&self) -> String {
        self.0.clone()
    }
    fn http_url(&self) -> Option<String> {
        None
    }
    fn sign(&self, _claims: &Claims) -> String {
        // The walk-through's tokens come from the documented command only.
        String::new()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

/// Runs the documented token command's arguments (`pairs`) with the binary, the secret for
/// `--jwt-secret`, and `user` for `--user`; returns the token.
fn run_token_command(
    pairs: &[(String, Word)],
    secret: &str,
    user: Option<&str>,
    cwd: &Path,
) -> anyhow::Result<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roomcast-local"));
    command.arg("token").current_dir(cwd);
    for (name, word) in pairs {
        let value = match (name.as_str(), user) {
            ("--jwt-secret", _) => secret,
            ("--user", Some(user)) => user,
            _ => word.value.as_str(),
        };
        command.arg(name).arg(value);
    }
    let out = command
        .env_remove("ROOMCAST_JWT_SECRET")
        .output()
        .context("running roomcast-local token")?;
    ensure!(
        out.status.success(),
        "the documented token command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The files the walk-through follows.
fn documents() -> anyhow::Result<(String, String)> {
    let root = checkout();
    Ok((
        std::fs::read_to_string(root.join("docs/deploy.md"))?,
        std::fs::read_to_string(root.join("terraform/terraform.tfvars.example"))?,
    ))
}

#[test]
fn deploy_md_try_it_step_works_against_a_server_configured_like_the_tfvars_example()
-> anyhow::Result<()> {
    let (deploy_md, tfvars_example) = documents()?;
    walk_through(&deploy_md, &tfvars_example)
}

#[test]
fn the_walk_through_fails_when_deploy_md_and_the_tfvars_disagree() -> anyhow::Result<()> {
    let (deploy_md, tfvars_example) = documents()?;
    let audience = "--audience roomcast";
    ensure!(
        deploy_md.contains(audience),
        "deploy.md no longer has `{audience}`"
    );
    let cases = [
        (
            deploy_md.replace(audience, "--audience someone-else"),
            tfvars_example.clone(),
            "jwt_audience",
        ),
        (
            deploy_md.clone(),
            tfvars_example.replace("https://auth.example.com/", "https://login.example.org/"),
            "jwt_issuer",
        ),
        (
            deploy_md.replace("--region eu-west-1 --name", "--name"),
            tfvars_example.clone(),
            "--region",
        ),
    ];
    for (md, vars, says) in cases {
        match walk_through(&md, &vars) {
            Ok(()) => bail!("a walk-through whose {says} disagrees passed"),
            Err(e) => ensure!(format!("{e:#}").contains(says), "{e:#}"),
        }
    }
    Ok(())
}

/// Follows `deploy_md`'s "Try it" step with the settings of `tfvars_example`.
fn walk_through(deploy_md: &str, tfvars_example: &str) -> anyhow::Result<()> {
    let vars = tfvars(tfvars_example);
    let var = |name: &str| {
        vars.get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("terraform.tfvars.example sets no string `{name}`"))
    };
    let (issuer, audience) = (var("jwt_issuer")?, var("jwt_audience")?);
    let (region, parameter) = (var("region")?, var("jwt_key_parameter_name")?);
    ensure!(
        var("jwt_alg")? == "HS256",
        "the tfvars example's jwt_alg is {}: the walk-through follows deploy.md's HS256 \
         command and must learn the new one",
        var("jwt_alg")?
    );

    let (line, command) = documented_token_command(deploy_md)?;
    let pairs = token_arguments(&command)
        .with_context(|| format!("docs/deploy.md, the token command in the block at {line}"))?;
    let at = format!("docs/deploy.md, the token command in the block at line {line}");
    for (name, want, tfvar) in [
        ("--issuer", issuer, "jwt_issuer"),
        ("--audience", audience, "jwt_audience"),
    ] {
        let given = flag(&pairs, name).map(|w| w.value.as_str());
        ensure!(
            given == Some(want),
            "{at}: {name} is {given:?}, the tfvars example's {tfvar} is {want:?}: the token \
             would be refused (401)"
        );
    }
    for (name, word) in &pairs {
        ensure!(
            name == "--jwt-secret" || (!word.raw.contains('$') && !word.raw.contains('`')),
            "{at}: {name} {} expands something the walk-through cannot follow",
            word.raw
        );
    }
    ensure!(
        flag(&pairs, "--alg").is_none_or(|w| w.value.eq_ignore_ascii_case("HS256")),
        "{at}: not an HS256 command"
    );
    // The secret's source: the parameter the tfvars name, in their region, decrypted.
    let source = &flag(&pairs, "--jwt-secret")
        .with_context(|| format!("{at}: no --jwt-secret"))?
        .raw;
    let source_words: Vec<String> = shell_words(
        source
            .trim_matches('"')
            .strip_prefix("$(")
            .and_then(|s| s.strip_suffix(')'))
            .with_context(|| format!("{at}: --jwt-secret is not \"$(…)\""))?,
    )?
    .into_iter()
    .map(|w| w.value)
    .collect();
    for expected in [
        &["aws", "ssm", "get-parameter"][..],
        &["--region", region],
        &["--name", parameter],
        &["--with-decryption"],
    ] {
        ensure!(
            source_words.windows(expected.len()).any(|w| w == expected),
            "{at}: the secret is read with `{}`, which lacks `{}` (tfvars: region {region}, \
             jwt_key_parameter_name {parameter})",
            source_words.join(" "),
            expected.join(" ")
        );
    }

    let (url_form, frames) = documented_connection(deploy_md)?;
    let [join, message] = frames.as_slice() else {
        bail!(
            "docs/deploy.md's connection sends {frames:?}; the walk-through expects a join, then a message"
        );
    };
    ensure!(
        join["action"] == "join" && message["action"] == "message",
        "docs/deploy.md's frames are {join} and {message}"
    );
    let room = join["room"].as_str().context("the join names no room")?;
    let id = message["id"].as_str().context("the message has no id")?;

    // Step 2's secret, the server configured as the tfvars configure the functions.
    let secret = openssl(&["rand", "-base64", "48"])?;
    let secret = secret.trim();
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_key(
        &dir.path().join("data"),
        &[
            "--jwt-secret",
            secret,
            "--jwt-issuer",
            issuer,
            "--jwt-audience",
            audience,
        ],
    )?;
    let token = run_token_command(&pairs, secret, None, dir.path())?;
    let other = run_token_command(&pairs, secret, Some("walkthrough-peer"), dir.path())?;

    // The local server's WebSocket path is `/` (API Gateway's is the stage: `wss://…/prod`).
    let wss_url = format!("ws://127.0.0.1:{}/", server.port);
    let url_for = |token: &str| -> anyhow::Result<String> {
        let url = url_form
            .replace("$WSS_URL", &wss_url)
            .replace("${WSS_URL}", &wss_url)
            .replace("$TOKEN", token)
            .replace("${TOKEN}", token);
        ensure!(
            !url.contains('$'),
            "docs/deploy.md's URL {url_form} uses more than $WSS_URL and $TOKEN"
        );
        Ok(url)
    };
    let (url, other_url) = (url_for(&token)?, url_for(&other)?);
    let at = at.as_str();
    process::runtime().block_on(async {
        let connect = |url: String, label: &'static str| async move {
            Client::try_connect(&DocumentedUrl(url), Credentials::None, label)
                .await
                .map_err(|e| anyhow!("{at}: the documented token and URL: {e}"))
        };
        let mut reader = connect(url, "the reader").await?;
        let mut peer = connect(other_url, "the second client").await?;
        peer.send_json(join).await?;
        peer.expect("`joined`", |f| {
            frame_type(f) == "joined" && f["room"] == room
        })
        .await?;
        reader.send_json(join).await?;
        reader
            .expect("`joined`", |f| {
                frame_type(f) == "joined" && f["room"] == room
            })
            .await?;
        reader.send_json(message).await?;
        let ack = reader.expect_ack(id).await?;
        let delivered = peer
            .expect("the documented message", |f| {
                frame_type(f) == "message" && f["id"] == id
            })
            .await?;
        ensure!(
            delivered["body"] == message["body"] && delivered["seq"] == ack["seq"],
            "delivered {delivered}, acknowledged {ack}"
        );
        reader.close().await?;
        peer.close().await?;
        Ok(())
    })
}

#[test]
fn the_parsers_read_what_deploy_md_writes() -> anyhow::Result<()> {
    let words = shell_words(
        r#"cargo run -q -p roomcast-local -- token --rooms 'support-*' --jwt-secret "$(aws ssm get-parameter --name /k --query "a b")""#,
    )?;
    let values: Vec<&str> = words.iter().map(|w| w.value.as_str()).collect();
    ensure!(
        values[..8]
            == [
                "cargo",
                "run",
                "-q",
                "-p",
                "roomcast-local",
                "--",
                "token",
                "--rooms"
            ],
        "{values:?}"
    );
    ensure!(values[8] == "support-*" && values.len() == 11, "{values:?}");
    ensure!(
        words[10].raw == r#""$(aws ssm get-parameter --name /k --query "a b")""#,
        "{words:?}"
    );
    let md = "x\n```sh\nTOKEN=$(roomcast-local token --user a \\\n  --rooms b)\n```\n";
    let (line, command) = documented_token_command(md)?;
    ensure!(line == 3, "{line}");
    let pairs = token_arguments(&command)?;
    ensure!(
        flag(&pairs, "--rooms").map(|w| w.value.as_str()) == Some("b"),
        "{pairs:?}"
    );
    let vars = tfvars("# c\njwt_issuer = \"https://i/\"\nrate_burst = 30\n");
    ensure!(
        vars.get("jwt_issuer").map(String::as_str) == Some("https://i/") && vars.len() == 1,
        "{vars:?}"
    );
    Ok(())
}
