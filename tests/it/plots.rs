//! The SVG plots of `simulate --plot`, `merge --plot` and `blast --plot`, read as a network
//! engineer reads them: axes with units, blocking that was never seen drawn as 0 (not as
//! 1e-7), and a legend that covers no point.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("udprange-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn udprange_in(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
    output
}

/// The value of attribute `name` in one SVG element's text.
fn attribute<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let length = element[start..].find('"')?;
    Some(&element[start..start + length])
}

fn number(element: &str, name: &str) -> f64 {
    attribute(element, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {element}"))
}

/// Every `<tag …>` element's attributes, in document order.
fn elements<'a>(svg: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    svg.match_indices(&open)
        .map(|(at, _)| &svg[at..at + svg[at..].find('>').unwrap()])
        .collect()
}

/// Every text: (its attributes, what it says).
fn texts(svg: &str) -> Vec<(&str, String)> {
    svg.match_indices("<text ")
        .map(|(at, _)| {
            let rest = &svg[at..];
            let close = rest.find('>').unwrap();
            let end = rest.find("</text>").unwrap();
            (&rest[..close], rest[close + 1..end].trim().to_string())
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Box2 {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl Box2 {
    fn overlaps(self, other: Box2) -> bool {
        self.left < other.right
            && other.left < self.right
            && self.top < other.bottom
            && other.top < self.bottom
    }
}

/// What every simulation plot must show (`simulate --plot`, `merge --plot`).
fn check_simulation_plot(svg: &str) {
    assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
    let texts = texts(svg);
    let said: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
    // Axes with units.
    for label in [
        "client range size (ports, from 33001)",
        "blocking probability (log scale; 0 at the bottom)",
    ] {
        assert!(said.contains(&label), "no {label:?} in {said:?}");
    }
    let time = said
        .iter()
        .find(|t| t.starts_with("simulated time ("))
        .expect("a time axis");
    assert!(
        ["(s)", "(min)", "(h)"].iter().any(|u| time.ends_with(u)),
        "{time}"
    );
    let held = said
        .iter()
        .find(|t| t.starts_with("ports held (mean per "))
        .unwrap_or_else(|| panic!("no occupancy axis with its bin width in {said:?}"));
    let width = held
        .trim_start_matches("ports held (mean per ")
        .trim_end_matches(')');
    let (value, unit) = width.split_once(' ').unwrap();
    assert!(["ms", "s", "min", "h", "d"].contains(&unit), "{held}");
    let value: f64 = value.parse().unwrap();
    assert!(
        [
            1.0, 2.0, 3.0, 5.0, 6.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0, 100.0, 200.0, 500.0
        ]
        .contains(&value),
        "not a round bin width: {held}"
    );

    // Zero blocking is 0: no 1e-7 anywhere, a 0 row, and the zero markers on it.
    for never in ["1e-7", "0.0000001", "1e-07"] {
        assert!(!svg.contains(never), "{never} in the plot");
    }
    let zero_row = texts
        .iter()
        .find(|(element, t)| t == "0" && attribute(element, "text-anchor") == Some("end"))
        .map(|(element, _)| number(element, "y"))
        .expect("a y tick labelled 0");
    let circles = elements(svg, "circle");
    let rings: Vec<&str> = circles
        .iter()
        .copied()
        .filter(|c| attribute(c, "fill") == Some("none"))
        .collect();
    assert!(said.contains(&"none blocked (drawn at 0)"), "{said:?}");
    // One ring in the legend, the others on the 0 row.
    assert!(rings.len() >= 2, "{rings:?}");

    // The legend: a box that no point of the chart overlaps, in a column of its own.
    let legend = elements(svg, "rect")
        .into_iter()
        .find(|r| attribute(r, "fill") == Some("none") && attribute(r, "stroke") == Some("#000000"))
        .map(|r| {
            let (x, y) = (number(r, "x"), number(r, "y"));
            Box2 {
                left: x,
                top: y,
                right: x + number(r, "width"),
                bottom: y + number(r, "height"),
            }
        })
        .expect("a legend box");
    let mut chart_points = 0;
    for circle in &circles {
        let (x, y, r) = (
            number(circle, "cx"),
            number(circle, "cy"),
            number(circle, "r"),
        );
        let point = Box2 {
            left: x - r,
            top: y - r,
            right: x + r,
            bottom: y + r,
        };
        let in_legend = point.left >= legend.left && point.right <= legend.right;
        if in_legend && point.top >= legend.top && point.bottom <= legend.bottom {
            continue;
        }
        chart_points += 1;
        assert!(
            !point.overlaps(legend),
            "{circle} under the legend {legend:?}"
        );
        assert!(
            point.right < legend.left,
            "{circle} is not left of the legend"
        );
        if attribute(circle, "fill") == Some("none") {
            assert!(
                (y - zero_row).abs() <= 1.0,
                "a zero off the 0 row: {circle}"
            );
        }
    }
    let recommended = circles
        .iter()
        .filter(|c| attribute(c, "r") == Some("6"))
        .count();
    assert_eq!(recommended, 1, "the recommended point");
    assert!(chart_points >= 2, "{circles:?}");
}

/// The seed example: 10 ports block nobody, so its point is a zero.
#[test]
fn simulate_plot_has_units_zero_as_zero_and_a_legend_beside() {
    let dir = scratch("plot-simulate");
    let output = udprange_in(&dir, &["simulate", "--plot", "seed.svg", "--format", "csv"]);
    assert!(
        text(&output.stdout).contains("\n10,33001,33010,0,0,"),
        "the seed's 10 ports block nobody: {}",
        text(&output.stdout)
    );
    check_simulation_plot(&fs::read_to_string(dir.join("seed.svg")).unwrap());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn merge_plot_is_drawn_the_same_way() {
    let dir = scratch("plot-merge");
    for i in 0..2 {
        let (shard, out) = (format!("{i}/2"), format!("part-{i}.json"));
        udprange_in(&dir, &["simulate", "--shard", &shard, "--out", &out]);
    }
    udprange_in(
        &dir,
        &[
            "merge",
            "part-0.json",
            "part-1.json",
            "--plot",
            "merged.svg",
        ],
    );
    check_simulation_plot(&fs::read_to_string(dir.join("merged.svg")).unwrap());
    fs::remove_dir_all(&dir).unwrap();
}

/// Loopback: no root needed.
#[test]
fn blast_plot_axes_have_units() {
    let dir = scratch("plot-blast");
    udprange_in(
        &dir,
        &[
            "blast",
            "--clients",
            "2",
            "--duration",
            "1s",
            "--policy",
            "fair",
            "--base-port",
            "64701",
            "--allowed",
            "64701-64710",
            "--plot",
            "rates.svg",
        ],
    );
    let svg = fs::read_to_string(dir.join("rates.svg")).unwrap();
    let said: Vec<String> = texts(&svg).into_iter().map(|(_, t)| t).collect();
    for label in [
        "time since the session began sending (s)",
        "pacing rate (Mbit/s)",
    ] {
        assert!(said.iter().any(|t| t == label), "no {label:?} in {said:?}");
    }
    fs::remove_dir_all(&dir).unwrap();
}
