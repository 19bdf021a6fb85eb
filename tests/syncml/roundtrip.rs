//! parse → write → parse is the identity; `written_len` is exact; owned copies are equal.

use winmdm::syncml::{
    self, parse, parse_fragment, write, write_fragment, written_len, Command, SyncMl,
};

use super::*;

fn check_message(name: &str, input: &[u8]) -> SyncMl<'static> {
    let m = parse(input).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut out = Vec::new();
    write(&m, &mut out);
    assert_eq!(out.len(), written_len(&m), "{name}: written_len");
    let per_cmd: usize = m.body.commands.iter().map(Command::written_len).sum();
    let mut env = m.clone();
    env.body.commands.clear();
    assert_eq!(
        written_len(&env) + per_cmd,
        out.len(),
        "{name}: sizes add up"
    );
    let m2 = parse(&out)
        .unwrap_or_else(|e| panic!("{name}: reparse: {e}\n{}", String::from_utf8_lossy(&out)));
    assert_eq!(m, m2, "{name}: round trip");
    let mut out2 = Vec::new();
    write(&m2, &mut out2);
    assert_eq!(out, out2, "{name}: deterministic");
    syncml::fuzzing::roundtrip(input);
    let owned = m.clone().into_owned();
    assert_eq!(owned, m);
    owned
}

fn check_fragment(name: &str, input: &[u8]) {
    let cmds = parse_fragment(input).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut out = Vec::new();
    write_fragment(&cmds, &mut out);
    assert_eq!(
        out.len(),
        cmds.iter().map(Command::written_len).sum::<usize>(),
        "{name}"
    );
    let again = parse_fragment(&out).unwrap_or_else(|e| panic!("{name}: reparse: {e}"));
    assert_eq!(cmds, again, "{name}: round trip");
}

#[test]
fn fixtures_round_trip() {
    for p in fixture_messages() {
        check_message(&p.display().to_string(), &read(&p));
    }
    for p in fixture_fragments() {
        check_fragment(&p.display().to_string(), &read(&p));
    }
}

#[test]
fn conformance_captures_round_trip() {
    let Some(files) = conformance_messages() else {
        return;
    };
    for p in files {
        check_message(&p.display().to_string(), &read(&p));
    }
    let Some(files) = conformance_fragments() else {
        return;
    };
    for p in files {
        let s = fix_undeclared_a_prefix(&String::from_utf8(read(&p)).unwrap());
        check_fragment(&p.display().to_string(), s.as_bytes());
    }
}

#[test]
fn generated_messages_round_trip() {
    for (name, m) in [
        ("first_package", gen::first_package()),
        ("get_reply", gen::get_reply(50)),
        ("large_results", gen::large_results(100)),
        ("plain_results", gen::plain_results(5, 7)),
    ] {
        check_message(name, m.as_bytes());
    }
    for seed in 0..300 {
        check_message(
            &format!("random_message({seed})"),
            gen::random_message(seed).as_bytes(),
        );
    }
}

/// Crash inputs found by `cargo fuzz` and any corpus the fuzzer left behind.
#[test]
fn fuzz_regressions_and_corpus() {
    let mut n = 0;
    let dirs = [
        fixture_dir().join("regressions"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/syncml_roundtrip"),
    ];
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.path().is_file() {
                syncml::fuzzing::roundtrip(&read(&e.path()));
                n += 1;
            }
        }
    }
    println!("fuzz regressions/corpus inputs checked: {n}");
}

#[test]
fn sizes_generated_as_specified() {
    assert!(
        (1500..3000).contains(&gen::first_package().len()),
        "{}",
        gen::first_package().len()
    );
    let g = gen::get_reply(50).len();
    assert!((25_000..40_000).contains(&g), "{g}");
    // large_results(2000) is ~3 MB: check the per-item size on a slice of it.
    let l = gen::large_results(100).len();
    assert!((130_000..180_000).contains(&l), "{l}");
}
