//! Issue 22, files outside the store: every file `winmdm serve` creates in a fresh data
//! directory (CA key and certificate, TLS key, chain and host list, admin token, login-token
//! key) gets its name only through a rename of a temporary file that was `fsync`ed first, and
//! the directory is `fsync`ed after the rename; every directory it creates is followed by an
//! `fsync` of its parent. Checked on the real binary under `strace -f -y`: a power cut at any
//! moment leaves each file whole (old or new), never empty or half-written.
//!
//! Without `strace` (or without permission to trace) the test prints `SKIP: …` and passes,
//! unless `WINMDM_REQUIRE_STRACE=1`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::child::send;
use crate::support::Client;

/// The system calls traced (`-e trace=`).
const TRACED: &str = "openat,write,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat";

/// The files a first start writes into the data directory, and whether each is a secret.
const FILES: [(&str, bool); 7] = [
    ("ca/ca.key", true),
    ("ca/ca.pem", false),
    ("tls/server.key", true),
    ("tls/server.pem", false),
    ("tls/host", false),
    ("admin-token", true),
    ("sts-key", true),
];

/// Whether the test may skip for want of a usable `strace`.
fn skip_or_fail(why: &str) {
    if std::env::var("WINMDM_REQUIRE_STRACE").as_deref() == Ok("1") {
        panic!("WINMDM_REQUIRE_STRACE=1 but {why}");
    }
    println!("SKIP: {why}");
}

/// `Ok` when `strace` is installed and may trace a child here.
fn strace_usable() -> Result<(), String> {
    match Command::new("strace").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        _ => return Err("strace not installed".into()),
    }
    let o = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("strace cannot run: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "strace cannot trace here: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}

/// One system call from the trace: its arguments split at top-level commas, its return value,
/// and the indexes of the lines where it started and ended (they differ when strace printed
/// it `<unfinished ...>` and `resumed` around another thread's call).
#[derive(Debug, Clone)]
struct Call {
    name: String,
    args: Vec<String>,
    ret: String,
    start: usize,
    end: usize,
}

impl Call {
    fn ok(&self) -> bool {
        !self.ret.trim_start().starts_with('-')
    }

    /// The path strace (`-y`) printed for argument `i` (a descriptor `5</a/b>`), or the
    /// string argument `i` resolved against the descriptor argument before it (`*at` calls).
    fn path_arg(&self, i: usize) -> Option<PathBuf> {
        let a = self.args.get(i)?;
        if let Some(s) = unquote(a) {
            let p = PathBuf::from(s);
            if p.is_absolute() || i == 0 {
                return Some(p);
            }
            let base = self.args.get(i - 1).and_then(|d| fd_path(d))?;
            return Some(base.join(p));
        }
        fd_path(a)
    }
}

/// `5</a/b>` or `AT_FDCWD</a>` → `/a/b`, `/a`.
fn fd_path(s: &str) -> Option<PathBuf> {
    let open = s.find('<')?;
    let inner = s[open + 1..].strip_suffix('>')?;
    Some(PathBuf::from(inner))
}

/// A strace string argument (`"a\"b"`, maybe followed by `...`) without its quotes.
fn unquote(s: &str) -> Option<String> {
    let s = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// Splits `a, "b,c", 5</x,y>` at the commas outside quotes and `<…>`.
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped, mut angle, mut depth) = (false, false, 0u32, 0u32);
    for c in s.chars() {
        if quoted {
            cur.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '<' => angle += 1,
            '>' => angle = angle.saturating_sub(1),
            '[' | '{' | '(' => depth += 1,
            ']' | '}' | ')' => depth = depth.saturating_sub(1),
            ',' if angle == 0 && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// `name(args) = ret` → (name, args, ret), the call's text without the pid.
fn split_call(text: &str) -> Option<(String, String, String)> {
    let open = text.find('(')?;
    let name = text[..open].to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    // strace pads short calls: `fsync(3</d>)        = 0`.
    let eq = text.rfind(" = ")?;
    let args = text[open + 1..eq].trim_end().strip_suffix(')')?;
    Some((name, args.to_string(), text[eq + 3..].to_string()))
}

/// Parses `strace -f -y -o` output into calls, joining `<unfinished ...>`/`resumed` halves.
fn parse(trace: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut pending: HashMap<String, (String, usize)> = HashMap::new();
    for (i, line) in trace.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid.to_string(), (head.trim_end().to_string(), i));
            continue;
        }
        let (text, start) = match rest.strip_prefix("<... ") {
            Some(r) => {
                let Some((_, tail)) = r.split_once(" resumed>") else {
                    continue;
                };
                let Some((head, start)) = pending.remove(pid) else {
                    continue;
                };
                let sep = if head.ends_with('(') || tail.starts_with(')') {
                    ""
                } else {
                    ", "
                };
                (
                    format!("{head}{sep}{}", tail.trim_start_matches(", ")),
                    start,
                )
            }
            None => (rest.to_string(), i),
        };
        if let Some((name, args, ret)) = split_call(&text) {
            calls.push(Call {
                name,
                args: split_args(&args),
                ret,
                start,
                end: i,
            });
        }
    }
    calls
}

/// What the trace says about one file or directory: the violations found.
fn check_file(calls: &[Call], target: &Path, secret: bool) -> Vec<String> {
    let mut bad = Vec::new();
    let dir = target.parent().expect("file in a directory");
    let shown = target.display();
    // The final name is never opened for writing, and never written through.
    for c in calls {
        let flags = c.args.get(2).map(String::as_str).unwrap_or("");
        if c.name == "openat"
            && c.path_arg(1).as_deref() == Some(target)
            && ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                .iter()
                .any(|f| flags.contains(f))
        {
            bad.push(format!(
                "{shown} opened for writing under its final name ({flags})"
            ));
        }
        if c.name == "write" && c.path_arg(0).as_deref() == Some(target) {
            bad.push(format!("{shown} written in place"));
        }
    }
    let renames: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name.starts_with("rename") && c.ok())
        .filter(|c| {
            let new = if c.name == "rename" { 1 } else { 3 };
            c.path_arg(new).as_deref() == Some(target)
        })
        .collect();
    let Some(rename) = renames.first() else {
        bad.push(format!("{shown} never renamed into place"));
        return bad;
    };
    let Some(tmp) = rename.path_arg(if rename.name == "rename" { 0 } else { 1 }) else {
        bad.push(format!("{shown}: unreadable rename {rename:?}"));
        return bad;
    };
    if tmp.parent() != Some(dir) {
        bad.push(format!(
            "{shown}: renamed from another directory ({})",
            tmp.display()
        ));
    }
    // The temporary file: created exclusively, with the final mode.
    let created = calls
        .iter()
        .find(|c| c.name == "openat" && c.ok() && c.ret.contains(&format!("<{}>", tmp.display())));
    match created {
        None => bad.push(format!("{shown}: temporary {} never opened", tmp.display())),
        Some(c) => {
            let flags = c.args.get(2).map(String::as_str).unwrap_or("");
            if !(flags.contains("O_CREAT") && flags.contains("O_EXCL")) {
                bad.push(format!(
                    "{shown}: temporary opened without O_CREAT|O_EXCL ({flags})"
                ));
            }
            if secret && c.args.get(3).map(String::as_str) != Some("0600") {
                bad.push(format!(
                    "{shown}: secret's temporary file created with mode {:?}, not 0600",
                    c.args.get(3)
                ));
            }
        }
    }
    // Its data synced before the rename, after the last write.
    let on_tmp = |c: &&Call| c.path_arg(0).as_deref() == Some(tmp.as_path());
    let last_write = calls
        .iter()
        .filter(|c| c.name == "write")
        .filter(on_tmp)
        .map(|c| c.end)
        .max();
    if last_write.is_none() {
        bad.push(format!("{shown}: nothing written to its temporary file"));
    }
    let synced = calls
        .iter()
        .filter(|c| (c.name == "fsync" || c.name == "fdatasync") && c.ok())
        .filter(on_tmp)
        .any(|c| c.end < rename.start && last_write.is_none_or(|w| w < c.start));
    if !synced {
        bad.push(format!(
            "{shown}: its temporary file was not fsynced after its last write and before the rename"
        ));
    }
    // The rename made durable by a sync of the directory.
    if !dir_synced_after(calls, dir, rename.end) {
        bad.push(format!(
            "{shown}: directory {} not fsynced after the rename",
            dir.display()
        ));
    }
    bad
}

/// Whether `dir` was `fsync`ed by a call that started after line `after`.
fn dir_synced_after(calls: &[Call], dir: &Path, after: usize) -> bool {
    calls.iter().any(|c| {
        (c.name == "fsync" || c.name == "fdatasync")
            && c.ok()
            && c.start > after
            && c.path_arg(0).as_deref() == Some(dir)
    })
}

/// Each directory created (`mkdir`): mode 0700, its parent fsynced afterwards.
fn check_dir(calls: &[Call], dir: &Path) -> Vec<String> {
    let made = calls.iter().find(|c| {
        c.ok()
            && match c.name.as_str() {
                "mkdir" => c.path_arg(0).as_deref() == Some(dir),
                "mkdirat" => c.path_arg(1).as_deref() == Some(dir),
                _ => false,
            }
    });
    let Some(m) = made else {
        return vec![format!("{}: never created (mkdir)", dir.display())];
    };
    let mut bad = Vec::new();
    if m.args.last().map(String::as_str) != Some("0700") {
        bad.push(format!(
            "{}: created with mode {:?}, not 0700",
            dir.display(),
            m.args.last()
        ));
    }
    let parent = dir.parent().expect("has a parent");
    if !dir_synced_after(calls, parent, m.end) {
        bad.push(format!(
            "{}: parent {} not fsynced after the mkdir",
            dir.display(),
            parent.display()
        ));
    }
    bad
}

/// strace and the `winmdm serve` it runs; both stopped when dropped.
struct Traced {
    strace: Child,
}

impl Traced {
    /// The traced `winmdm` (strace's child), if it is running.
    fn server_pid(&self) -> Option<u32> {
        let pid = self.strace.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// SIGTERM to the server, then waits for strace (SIGKILL to both after `limit`).
    fn stop(&mut self, limit: Duration) {
        if let Some(pid) = self.server_pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.strace.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(pid) = self.server_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Ok(None) = self.strace.try_wait() {
            self.kill();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_writes_every_key_file_through_fsync_rename_and_directory_fsync() {
    if let Err(why) = strace_usable() {
        skip_or_fail(&why);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // strace -y prints resolved paths: compare against the canonical ones.
    let root = tmp.path().canonicalize().unwrap();
    let data = root.join("data");
    let trace_path = root.join("strace.out");
    let log_path = root.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (addr, mgmt) = (port(0), port(1));
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-y", "-e", &format!("trace={TRACED}"), "-o"])
        .arg(&trace_path)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_winmdm"));
    for (k, _) in std::env::vars() {
        if k.starts_with("WINMDM_") {
            cmd.env_remove(k);
        }
    }
    // No WINMDM_ADMIN_TOKEN: the server makes DATA_DIR/admin-token.
    cmd.arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--public-url")
        .arg(format!("https://localhost:{}", addr.port()))
        .arg("--mgmt-listen")
        .arg(mgmt.to_string())
        .arg("--mgmt-url")
        .arg(format!("https://localhost:{}", mgmt.port()))
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut traced = Traced {
        strace: cmd.spawn().expect("spawn strace"),
    };
    let server_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Until it answers /healthz over TLS (a debug build under strace: be patient).
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = traced.strace.try_wait() {
            panic!("winmdm under strace exited ({st}):\n{}", server_log());
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "winmdm did not answer under strace:\n{}",
            server_log()
        );
        let root_der = std::fs::read(data.join("ca/ca.pem"))
            .ok()
            .and_then(|pem| Some(x509_parser::pem::parse_x509_pem(&pem).ok()?.1.contents));
        if let Some(root_der) = root_der {
            let c = Client::new(addr, root_der, None);
            if send(&c, "GET", "/healthz", &[], vec![])
                .await
                .is_some_and(|r| r.status == 200)
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    traced.stop(Duration::from_secs(20));

    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let calls = parse(&trace);
    assert!(
        calls.iter().any(|c| c.name == "openat"),
        "no openat parsed from the trace:\n{}",
        &trace[..trace.len().min(4000)]
    );
    let mut bad = Vec::new();
    for dir in [data.clone(), data.join("ca"), data.join("tls")] {
        bad.extend(check_dir(&calls, &dir));
    }
    for (name, secret) in FILES {
        let p = data.join(name);
        assert!(p.is_file(), "{} was not created", p.display());
        bad.extend(check_file(&calls, &p, secret));
    }
    // No temporary file is left behind.
    for sub in [data.clone(), data.join("ca"), data.join("tls")] {
        for e in std::fs::read_dir(&sub).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            if n.contains(".tmp-") {
                bad.push(format!("temporary file left: {}/{n}", sub.display()));
            }
        }
    }
    println!(
        "strace: {} calls parsed, {} files and 3 directories checked, {} violations",
        calls.len(),
        FILES.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "not power-loss safe:\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn the_trace_parser_joins_unfinished_calls_and_reads_paths() {
    let t = "\
10 openat(AT_FDCWD</w>, \"/d/.k.tmp-1-0\", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600 <unfinished ...>
11 write(2</dev/pts/0>, \"a, \\\"b\\\"\", 6) = 6
10 <... openat resumed>) = 5</d/.k.tmp-1-0>
10 write(5</d/.k.tmp-1-0>, \"key\", 3) = 3
10 fsync(5</d/.k.tmp-1-0>) = 0
10 renameat(AT_FDCWD</w>, \"/d/.k.tmp-1-0\", AT_FDCWD</d>, \"k\" <unfinished ...>
11 --- SIGCHLD {si_signo=SIGCHLD} ---
10 <... renameat resumed>) = 0
10 openat(AT_FDCWD</w>, \"/d\", O_RDONLY|O_CLOEXEC) = 6</d>
10 fsync(6</d>)            = 0
";
    let calls = parse(t);
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["write", "openat", "write", "fsync", "renameat", "openat", "fsync"]
    );
    assert_eq!((calls[1].start, calls[1].end), (0, 2));
    assert_eq!(calls[1].args[3], "0600");
    assert_eq!(calls[0].args.len(), 3);
    assert_eq!(
        calls[4].path_arg(3).as_deref(),
        Some(Path::new("/d/k")),
        "a relative name resolves against its directory descriptor"
    );
    assert_eq!(
        check_file(&calls, Path::new("/d/k"), true),
        Vec::<String>::new()
    );
    assert_eq!(
        check_file(&calls, Path::new("/w/k"), true),
        ["/w/k never renamed into place"]
    );
    // Without the directory sync, or with the file sync after the rename: refused.
    let no_dir_sync = &calls[..6];
    let bad = check_file(no_dir_sync, Path::new("/d/k"), true);
    assert!(
        bad.iter()
            .any(|b| b.contains("not fsynced after the rename")),
        "{bad:?}"
    );
    let mut late = calls.clone();
    late[3].start = 8;
    late[3].end = 8;
    let bad = check_file(&late, Path::new("/d/k"), true);
    assert!(
        bad.iter().any(|b| b.contains("before the rename")),
        "{bad:?}"
    );
    // A secret whose temporary file was created with a wider mode: refused.
    let mut wide = calls.clone();
    wide[1].args[3] = "0666".into();
    let bad = check_file(&wide, Path::new("/d/k"), true);
    assert!(bad.iter().any(|b| b.contains("not 0600")), "{bad:?}");
    // Written in place, as before issue 22: every rule broken.
    let in_place = parse(
        "\
10 openat(AT_FDCWD</w>, \"/d/k\", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600) = 5</d/k>
10 write(5</d/k>, \"key\", 3) = 3
10 fsync(5</d/k>) = 0
",
    );
    let bad = check_file(&in_place, Path::new("/d/k"), true);
    assert!(
        bad.iter().any(|b| b.contains("opened for writing")),
        "{bad:?}"
    );
    assert!(
        bad.iter().any(|b| b.contains("written in place")),
        "{bad:?}"
    );
    assert!(bad.iter().any(|b| b.contains("never renamed")), "{bad:?}");
}
