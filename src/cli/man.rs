//! `udprange man`: roff pages generated from the clap definitions, udprange(1) and one per
//! command, udprange-plan(1) and so on (the pages udprange(1) points to), printed or written
//! into a directory.

use std::path::Path;

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use super::args::{Cli, ManArgs};
use super::output::{self, OutputFile};
use super::{Outcome, UsageError};

pub(super) fn man(args: &ManArgs) -> Result<Outcome, UsageError> {
    match (&args.command, &args.dir) {
        (Some(name), _) => {
            let (_, roff) = pages()
                .into_iter()
                .find(|(file, _)| *file == format!("udprange-{name}.1"))
                .expect("the COMMAND parser accepts command names only");
            Ok(Outcome::text(roff))
        }
        (None, None) => Ok(Outcome::text(pages().swap_remove(0).1)),
        (None, Some(dir)) => write_pages(dir),
    }
}

/// Every page, udprange.1 first: `(file name, roff)`.
pub fn pages() -> Vec<(String, String)> {
    // Built, the commands know their names as pages (`udprange-plan`) and in the synopsis
    // (`udprange plan`). clap's `help` command has no page of its own.
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    let mut pages = vec![page(Man::new(top.clone()), false)];
    pages.extend(
        top.get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| page(Man::new(c.clone()), true)),
    );
    pages
}

fn page(man: Man, see_also: bool) -> (String, String) {
    let man = man.source(concat!("udprange ", env!("CARGO_PKG_VERSION")));
    let mut buffer = Vec::new();
    man.render(&mut buffer)
        .expect("rendering to memory cannot fail");
    let mut roff = ascii(&String::from_utf8(buffer).expect("man pages are UTF-8"));
    if see_also {
        let mut section = Roff::new();
        section
            .control("SH", ["SEE ALSO"])
            .text([bold("udprange"), roman("(1)")]);
        roff.push_str(&section.to_roff());
    }
    (man.get_filename(), roff)
}

/// The page with every character beyond ASCII (the help's "—") as a groff escape, `\[u2014]`:
/// troff reads its input as Latin-1 unless run through preconv, as `man` does but a plain
/// `groff -man` does not.
fn ascii(roff: &str) -> String {
    let mut text = String::with_capacity(roff.len());
    for c in roff.chars() {
        if c.is_ascii() {
            text.push(c);
        } else {
            text.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    text
}

/// `--dir DIR`: every page into DIR, made if missing; stdout lists the files written.
fn write_pages(dir: &Path) -> Result<Outcome, UsageError> {
    let shown = dir.display().to_string();
    if dir.exists() && !dir.is_dir() {
        return Err(UsageError::flag("--dir", &shown, "is not a directory"));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| UsageError::flag("--dir", &shown, format!("cannot create it: {e}")))?;
    let files: Vec<OutputFile> = pages()
        .into_iter()
        .map(|(name, roff)| OutputFile {
            flag: "--dir",
            path: dir.join(name),
            contents: roff.into_bytes(),
        })
        .collect();
    let checks: Vec<_> = files
        .iter()
        .map(|f| (f.flag, Some(f.path.as_path())))
        .collect();
    output::preflight(&checks)?;
    let listing = files
        .iter()
        .map(|f| format!("{}\n", f.path.display()))
        .collect();
    Ok(Outcome {
        files,
        ..Outcome::text(listing)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_command_named_as_the_top_page_says() {
        let pages = pages();
        assert_eq!(pages[0].0, "udprange.1");
        for name in super::super::choices::CommandName::names() {
            let file = format!("udprange-{name}.1");
            let (_, roff) = pages
                .iter()
                .find(|(f, _)| *f == file)
                .unwrap_or_else(|| panic!("no {file}"));
            assert!(
                pages[0]
                    .1
                    .contains(&format!("udprange\\-{}(1)", name.replace('-', "\\-"))),
                "udprange(1) does not point to {file}"
            );
            assert!(roff.contains(&format!(".TH udprange-{name} 1")), "{roff}");
            assert!(roff.contains(".SH \"SEE ALSO\""), "{roff}");
        }
        assert!(!pages[0].1.contains("udprange\\-help"), "{}", pages[0].1);
    }
}
