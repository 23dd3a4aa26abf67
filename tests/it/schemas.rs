//! The committed JSON Schemas (`schemas/COMMAND.schema.json`) are what `udprange schema`
//! generates from the report types, and real outputs of every command validate against
//! them; an output missing a key or with a key of the wrong type does not.

use crate::common::{json_of, udprange};

fn schema(command: &str) -> serde_json::Value {
    let path = format!("schemas/{command}.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap();
    let generated = udprange(&["schema", command]);
    assert!(generated.status.success());
    assert_eq!(
        String::from_utf8_lossy(&generated.stdout),
        committed,
        "{path} is stale: udprange schema {command} > {path}"
    );
    serde_json::from_str(&committed).unwrap()
}

fn errors(schema: &serde_json::Value, value: &serde_json::Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("a valid schema");
    validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn outputs_validate_against_the_committed_schemas() {
    let dir = std::env::temp_dir().join(format!("udprange-schemas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let part = dir.join("part.json");
    let part = part.to_str().unwrap();
    assert!(
        udprange(&[
            "simulate",
            "scenarios/partners-narrow-range.toml",
            "--replications",
            "2",
            "--shard",
            "0/1",
            "--out",
            part,
        ])
        .status
        .success()
    );
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("plan", vec!["plan"]),
        (
            "plan",
            vec!["plan", "--os", "linux", "--vlink", "--occupied", "33001"],
        ),
        (
            "plan",
            vec!["plan", "--offered-load", "8", "--sources", "30"],
        ),
        (
            "plan",
            vec![
                "plan",
                "--from-log",
                "tests/data/logs/aspera-scp-transfer.log",
                "--growth",
                "30%",
            ],
        ),
        (
            "simulate",
            vec![
                "simulate",
                "scenarios/seed-windows-10.toml",
                "--replications",
                "2",
            ],
        ),
        (
            "simulate",
            vec![
                "simulate",
                "scenarios/partners-narrow-range.toml",
                "--replications",
                "2",
            ],
        ),
        ("merge", vec!["merge", part]),
        (
            "audit",
            vec!["audit", "tests/data/rulesets/corp.rules", "--iif", "eth0"],
        ),
        (
            "blast",
            vec![
                "blast",
                "--clients",
                "3",
                "--duration",
                "0.3s",
                "--base-port",
                "64821",
                "--allowed",
                "64821-64822",
                "--handshake-timeout",
                "0.5s",
            ],
        ),
    ];
    for (command, mut args) in runs {
        args.extend(["--format", "json"]);
        let value = json_of(&udprange(&args));
        let found = errors(&schema(command), &value);
        assert!(found.is_empty(), "{args:?}: {found:#?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_wrong_output_does_not_validate() {
    let schema = schema("plan");
    let good = json_of(&udprange(&["plan", "--format", "json"]));
    assert!(errors(&schema, &good).is_empty());
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("udp_range");
    assert!(
        !errors(&schema, &missing).is_empty(),
        "udp_range is required"
    );
    let mut mistyped = good.clone();
    mistyped["udp_range"]["first"] = serde_json::json!("33001");
    assert!(!errors(&schema, &mistyped).is_empty(), "a port is a number");
    let mut added = good.clone();
    added["udp_range"]["width"] = serde_json::json!(10);
    assert!(
        !errors(&schema, &added).is_empty(),
        "a key the vocabulary does not have"
    );
    let mut unprovenanced = good;
    unprovenanced.as_object_mut().unwrap().remove("started_at");
    assert!(
        !errors(&schema, &unprovenanced).is_empty(),
        "started_at is required"
    );
}
