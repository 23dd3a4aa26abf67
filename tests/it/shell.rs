//! What a shell user meets: `udprange` alone, the man pages and the completions, from the
//! real binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::CommandFactory;
use udprange::cli::Cli;

use crate::common::udprange;

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// udprange's commands as clap defines them (its `help` command has no page).
fn commands() -> Vec<clap::Command> {
    let mut cli = Cli::command();
    cli.build();
    cli.get_subcommands()
        .filter(|c| c.get_name() != "help")
        .cloned()
        .collect()
}

/// A flag as roff writes it: `\-\-no\-udp\-port\-reuse`.
fn roff_flag(long: &str) -> String {
    format!("\\-\\-{}", long.replace('-', "\\-"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("udprange-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn assert_usage_error(output: &Output, args: &[&str], needles: &[&str]) {
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
    assert!(output.stdout.is_empty(), "{args:?}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: no {needle:?} in {err}");
    }
}

#[test]
fn no_command_is_a_short_usage_on_stderr() {
    let output = udprange(&[]);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(output.stdout.is_empty());
    assert!(err.lines().count() <= 8, "{err}");
    assert!(err.starts_with("Usage: udprange <COMMAND>"), "{err}");
    for command in commands() {
        assert!(err.contains(command.get_name()), "{err}");
    }
    assert!(
        err.contains("udprange help") && err.contains("udprange <COMMAND> --help"),
        "{err}"
    );
    // The full help is still there when asked for.
    let help = udprange(&["help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).lines().count() > 8);
}

/// `udprange man COMMAND` is that command's page, with every flag; `udprange man` is the
/// top page, which points to each of them.
#[test]
fn every_command_has_a_man_page_with_every_flag() {
    let top = udprange(&["man"]);
    assert_eq!(top.status.code(), Some(0), "{}", text(&top.stderr));
    let top = text(&top.stdout);
    assert!(top.contains(".TH udprange 1"), "{top}");
    for command in commands() {
        let name = command.get_name();
        assert!(
            top.contains(&format!("udprange\\-{name}(1)")),
            "udprange(1) does not point to udprange-{name}(1)"
        );
        let output = udprange(&["man", name]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let page = text(&output.stdout);
        assert!(page.contains(&format!(".TH udprange-{name} 1")), "{page}");
        assert!(
            page.contains(&format!("\\fBudprange {name}\\fR")),
            "synopsis of {name}: {page}"
        );
        let longs: Vec<&str> = command
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long())
            .collect();
        assert!(longs.contains(&"help"), "{name}: {longs:?}");
        for long in longs {
            assert!(
                page.contains(&roff_flag(long)),
                "udprange-{name}(1) lacks --{long}"
            );
        }
        assert!(page.contains(".SH \"SEE ALSO\""), "{page}");
    }
    // Enumerated values are listed on the page.
    let plan = text(&udprange(&["man", "plan"]).stdout);
    assert!(plan.contains("freebsd"), "{plan}");
    assert_usage_error(
        &udprange(&["man", "ftp"]),
        &["man", "ftp"],
        &["'ftp'", "plan", "simulate", "completions", "man"],
    );
}

#[test]
fn man_dir_writes_every_page() {
    let dir = scratch("man");
    let target = dir.join("share").join("man1");
    let output = udprange(&["man", "--dir", target.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let mut want = vec!["udprange.1".to_string()];
    want.extend(
        commands()
            .iter()
            .map(|c| format!("udprange-{}.1", c.get_name())),
    );
    let mut written: Vec<String> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(written, sorted);
    // stdout lists what was written, one path a line.
    let listed: Vec<String> = text(&output.stdout).lines().map(String::from).collect();
    let paths: Vec<String> = want
        .iter()
        .map(|f| target.join(f).display().to_string())
        .collect();
    assert_eq!(listed, paths);
    // Each file is the page `man COMMAND` prints.
    for command in commands() {
        let name = command.get_name();
        let file = fs::read(target.join(format!("udprange-{name}.1"))).unwrap();
        assert_eq!(file, udprange(&["man", name]).stdout, "{name}");
    }
    assert_eq!(
        fs::read(target.join("udprange.1")).unwrap(),
        udprange(&["man"]).stdout
    );
    // Written again over the same pages: fine.
    assert!(
        udprange(&["man", "--dir", target.to_str().unwrap()])
            .status
            .success()
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn man_dir_that_cannot_be_written_is_named() {
    let dir = scratch("man-bad");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    fs::write(&file, "").unwrap();
    let under_file = file.join("man1");
    let mut cases: Vec<(PathBuf, &str)> = vec![
        (file.clone(), "is not a directory"),
        (under_file, "cannot create it"),
    ];
    // Root writes anywhere: only an unprivileged run can test a read-only directory.
    let locked = dir.join("locked");
    fs::create_dir(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    if fs::write(locked.join("probe"), "").is_ok() {
        eprintln!("SKIPPED (not a pass): a read-only --dir, as root");
    } else {
        cases.push((locked.clone(), "is not writable"));
    }
    for (path, why) in &cases {
        let shown = path.to_str().unwrap();
        let args = ["man", "--dir", shown];
        assert_usage_error(&udprange(&args), &args, &["--dir", shown, why]);
    }
    assert_usage_error(
        &udprange(&["man", "plan", "--dir", dir.to_str().unwrap()]),
        &["man", "plan", "--dir"],
        &["--dir"],
    );
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

/// Every page goes through groff with all warnings on and draws none. `.ci/run` installs
/// groff-base, so under CI a missing groff is a failure.
#[test]
fn man_pages_render_without_warnings() {
    let dir = scratch("man-render");
    let found = Command::new("groff").arg("--version").output().is_ok();
    if !found {
        crate::common::skip("`groff` is not installed (Debian: groff-base)");
        return;
    }
    let output = udprange(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for entry in fs::read_dir(&dir).unwrap() {
        let page = entry.unwrap().path();
        let rendered = render(&page);
        let warnings = text(&rendered.stderr);
        assert!(
            rendered.status.success() && warnings.is_empty(),
            "{}: {warnings}",
            page.display()
        );
        assert!(!rendered.stdout.is_empty(), "{}", page.display());
    }
    fs::remove_dir_all(&dir).unwrap();
}

fn render(page: &Path) -> Output {
    // -ww: every warning; -Tutf8 as a terminal reads it. No preconv: the page must be ASCII.
    Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .arg(page)
        .env("MANWIDTH", "80")
        .output()
        .unwrap()
}

/// Flags with a fixed set of values complete to those values in every shell, not to file
/// names.
#[test]
fn completions_offer_the_values_of_enumerated_flags() {
    let bash = text(&udprange(&["completions", "bash"]).stdout);
    let zsh = text(&udprange(&["completions", "zsh"]).stdout);
    let fish = text(&udprange(&["completions", "fish"]).stdout);
    for (flag, values) in [
        ("--os", "windows macos freebsd linux"),
        ("--format", "text json csv"),
        ("--syntax", "nftables iptables powershell pf"),
        ("--side", "client server"),
        ("--policy", "fixed fair high low"),
        ("--start", "together staggered"),
        ("--backend", "loopback netns"),
        ("--ruleset-at", "client router server"),
        ("--at", "client router server"),
    ] {
        let bash_case =
            format!("{flag})\n                    COMPREPLY=($(compgen -W \"{values}\"");
        assert!(
            bash.contains(&bash_case),
            "bash: {flag} does not offer {values}"
        );
        assert!(
            zsh.contains(&format!("'{flag}=[")) && zsh.contains(&format!(":({values})'")),
            "zsh: {flag} does not offer {values}"
        );
        let first = values.split(' ').next().unwrap();
        let fish_line = fish
            .lines()
            .find(|l| l.contains(&format!(" -l {} ", &flag[2..])) && l.contains("-a \""))
            .unwrap_or_else(|| panic!("fish: {flag} offers nothing"));
        assert!(
            fish_line.contains(&format!("-a \"{first}\\t")),
            "fish: {flag}: {fish_line}"
        );
    }
    // audit and serve write text or json: csv is not offered, nor taken.
    assert!(zsh.contains(":FORMAT:(text json)'"), "zsh");
    for command in ["audit", "serve"] {
        let args = [command, "--format", "csv"];
        assert_usage_error(
            &udprange(&args),
            &args,
            &["--format", "'csv'", "text, json"],
        );
    }
    // The shells, and the commands that have a man page.
    assert!(bash.contains("bash elvish fish powershell zsh"), "bash");
    assert!(
        bash.contains("--dir --help plan rules simulate check blast serve audit path merge"),
        "bash: man COMMAND"
    );
    // Values keep their spellings: case and spaces as before.
    let plan = udprange(&["plan", "--os", " Linux", "--format", "JSON"]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    assert_usage_error(
        &udprange(&["plan", "--os", "solaris"]),
        &["--os", "solaris"],
        &["--os", "solaris", "windows, macos, freebsd or linux"],
    );
}
