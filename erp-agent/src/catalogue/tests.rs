use super::*;

fn version(text: &str) -> ErpVersion {
    text.parse().unwrap()
}

fn series(text: &str) -> ErpSeries {
    text.parse().unwrap()
}

fn modules(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn shipped() -> Catalogue {
    Catalogue::shipped().expect("the shipped catalogue loads")
}

fn plan_error(result: Result<Plan>) -> PlanError {
    match result {
        Err(Error::UpgradePlan(error)) => error,
        other => panic!("expected a plan error, got {other:?}"),
    }
}

fn catalogue_error(result: Result<Catalogue>) -> String {
    match result {
        Err(error @ Error::Catalogue { .. }) => error.to_string(),
        other => panic!("expected a catalogue error, got {other:?}"),
    }
}

/// A small catalogue of a made-up profile, from TOML texts named by their index.
fn catalogue_of(files: &[&str]) -> Result<Catalogue> {
    Catalogue::default().merge(files.iter().enumerate().map(|(i, text)| (format!("test-{i}"), text.to_string())))
}

const PAIR_1_0_TO_1_2: &str = r#"
profile = "demo"
from = "1.0"
to = "1.2"

[[steps]]
id = "demo-1.2-always"
phase = "pre"
kind = "sql"
repeatable = true
description = "always"
source = "measured: test"
sql = "UPDATE t SET a = 1;"

[[steps]]
id = "demo-1.2-with-account"
phase = "post"
kind = "script"
modules = ["account", "sale"]
repeatable = true
description = "only with account and sale"
source = "measured: test"
script = "print(1)"
"#;

const PAIR_1_2_TO_1_4_EMPTY: &str = r#"
profile = "demo"
from = "1.2"
to = "1.4"
note = "nothing documented"
steps = []
"#;

#[test]
fn the_chain_from_7_0_to_8_2_lists_every_hop_in_order() {
    let plan = plan("tryton", version("7.0.59"), version("8.2.1"), &BTreeSet::new(), &shipped()).unwrap();
    let hops: Vec<(String, String)> = plan.hops.iter().map(|h| (h.from.to_string(), h.to.to_string())).collect();
    let expected = [("7.0", "7.2"), ("7.2", "7.4"), ("7.4", "7.6"), ("7.6", "7.8"), ("7.8", "8.0"), ("8.0", "8.2")];
    assert_eq!(hops, expected.map(|(a, b)| (a.to_string(), b.to_string())));

    let keys: Vec<String> = plan.stages().iter().map(Stage::key).collect();
    assert_eq!(
        keys,
        [
            "7.0-7.2/pre/tryton-7.2-empty-foreign-keys-to-null",
            "7.0-7.2/update-all",
            "7.2-7.4/update-all",
            "7.4-7.6/pre/tryton-7.6-rename-ir-model-columns",
            "7.4-7.6/update-all",
            "7.4-7.6/post/tryton-7.6-set-admin-password",
            "7.6-7.8/update-all",
            "7.8-8.0/pre/tryton-8.0-remove-google-maps-module",
            "7.8-8.0/pre/tryton-8.0-remove-account-es-modules",
            "7.8-8.0/pre/tryton-8.0-remove-account-de-skr03-module",
            "7.8-8.0/update-all",
            "8.0-8.2/pre/tryton-8.2-register-root-user",
            "8.0-8.2/update-all",
            "8.0-8.2/post/tryton-8.2-restore-administrator",
        ]
    );
    let skipped: Vec<&str> = plan.hops.iter().flat_map(|h| &h.skipped).map(|s| s.id.as_str()).collect();
    assert!(skipped.contains(&"tryton-8.2-account-reconciliation-date"), "{skipped:?}");
    assert!(plan.hops[2].warnings.iter().any(|w| w.contains("scrypt")), "the 7.6 password warning is carried");
}

#[test]
fn a_partial_chain_starts_and_ends_at_the_given_series() {
    let plan = plan("tryton", version("7.4.3"), version("7.8.0"), &BTreeSet::new(), &shipped()).unwrap();
    let hops: Vec<String> = plan.hops.iter().map(|h| format!("{}-{}", h.from, h.to)).collect();
    assert_eq!(hops, ["7.4-7.6", "7.6-7.8"]);
}

#[test]
fn a_module_condition_filters_steps() {
    let catalogue = catalogue_of(&[PAIR_1_0_TO_1_2]).unwrap();
    let without = plan("demo", version("1.0.0"), version("1.2.0"), &modules(&["account"]), &catalogue).unwrap();
    assert!(without.hops[0].post.is_empty());
    assert_eq!(
        without.hops[0].skipped,
        [SkippedStep { id: "demo-1.2-with-account".into(), missing_modules: vec!["sale".into()] }]
    );
    let with =
        plan("demo", version("1.0.0"), version("1.2.0"), &modules(&["account", "sale", "party"]), &catalogue).unwrap();
    assert_eq!(with.hops[0].post.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["demo-1.2-with-account"]);
    assert!(with.hops[0].skipped.is_empty());

    // The shipped account step of 8.2 runs only with `account`.
    let account =
        plan("tryton", version("8.0.0"), version("8.2.0"), &modules(&["account", "ir", "res"]), &shipped()).unwrap();
    assert!(account.hops[0].post.iter().any(|s| s.id == "tryton-8.2-account-reconciliation-date"));
}

#[test]
fn provider_steps_merge_after_the_shipped_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tryton")).unwrap();
    std::fs::write(
        dir.path().join("tryton/our-7.0-7.2.toml"),
        r#"
profile = "tryton"
from = "7.0"
to = "7.2"

[[steps]]
id = "acme-7.2-clean-custom-table"
phase = "pre"
kind = "sql"
repeatable = true
description = "our own cleanup"
source = "https://provider.example/runbook"
sql = "DELETE FROM acme_tmp;"
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not a step file").unwrap();
    let catalogue = Catalogue::shipped_with_provider_dir(dir.path()).unwrap();
    let plan = plan("tryton", version("7.0.0"), version("7.2.0"), &BTreeSet::new(), &catalogue).unwrap();
    let pre: Vec<&str> = plan.hops[0].pre.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(pre, ["tryton-7.2-empty-foreign-keys-to-null", "acme-7.2-clean-custom-table"]);
    assert!(plan.hops[0].pre[1].origin.ends_with("our-7.0-7.2.toml"));
}

#[test]
fn a_provider_step_id_clash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clash.toml"),
        r#"
profile = "tryton"
from = "7.4"
to = "7.6"

[[steps]]
id = "tryton-7.6-rename-ir-model-columns"
phase = "post"
kind = "admin"
repeatable = true
description = "pretends to be the shipped step"
source = "measured: no"
args = ["-p"]
"#,
    )
    .unwrap();
    let error = catalogue_error(Catalogue::shipped_with_provider_dir(dir.path()));
    assert!(
        error
            .contains("step id `tryton-7.6-rename-ir-model-columns` is already defined in shipped:tryton/7.4-7.6.toml")
    );
    assert!(error.contains("clash.toml"), "{error}");
}

#[test]
fn a_missing_provider_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let result = Catalogue::shipped_with_provider_dir(&dir.path().join("absent"));
    assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
}

#[test]
fn a_missing_pair_is_an_error() {
    // 1.0 → 1.2 and 1.4 → 1.6 are known, 1.2 → 1.4 is not: a gap, not "nothing to do".
    let pair_1_4_to_1_6 = PAIR_1_2_TO_1_4_EMPTY.replace("1.2", "1.4").replace("\"1.4\"\nnote", "\"1.6\"\nnote");
    let catalogue = catalogue_of(&[PAIR_1_0_TO_1_2, &pair_1_4_to_1_6]).unwrap();
    assert_eq!(catalogue.series("demo"), [series("1.0"), series("1.2"), series("1.4"), series("1.6")]);
    let error = plan_error(plan("demo", version("1.0.0"), version("1.6.0"), &BTreeSet::new(), &catalogue));
    assert_eq!(error, PlanError::MissingPair { profile: "demo".into(), from: series("1.2"), to: series("1.4") });

    // Beyond the newest series the catalogue knows, and before the oldest.
    let error = plan_error(plan("tryton", version("8.0.1"), version("8.4.0"), &BTreeSet::new(), &shipped()));
    assert_eq!(error, PlanError::MissingPair { profile: "tryton".into(), from: series("8.2"), to: series("8.4") });
    let error = plan_error(plan("tryton", version("6.8.0"), version("7.2.0"), &BTreeSet::new(), &shipped()));
    assert_eq!(error, PlanError::MissingPair { profile: "tryton".into(), from: series("6.8"), to: series("7.0") });
}

#[test]
fn an_empty_pair_with_a_note_plans_only_the_update() {
    let catalogue = catalogue_of(&[PAIR_1_0_TO_1_2, PAIR_1_2_TO_1_4_EMPTY]).unwrap();
    let plan = plan("demo", version("1.2.0"), version("1.4.0"), &BTreeSet::new(), &catalogue).unwrap();
    assert_eq!(plan.stages().iter().map(Stage::key).collect::<Vec<_>>(), ["1.2-1.4/update-all"]);
    assert_eq!(plan.hops[0].notes, ["nothing documented"]);
}

#[test]
fn downgrades_same_series_development_and_unknown_profiles_are_refused() {
    let none = BTreeSet::new();
    let catalogue = shipped();
    assert_eq!(
        plan_error(plan("tryton", version("8.2.0"), version("7.0.5"), &none, &catalogue)),
        PlanError::Downgrade { from: version("8.2.0"), to: version("7.0.5") }
    );
    assert_eq!(
        plan_error(plan("tryton", version("7.0.3"), version("7.0.59"), &none, &catalogue)),
        PlanError::SameSeries { from: version("7.0.3"), to: version("7.0.59") }
    );
    assert_eq!(
        plan_error(plan("tryton", version("7.0.3"), version("7.3.0"), &none, &catalogue)),
        PlanError::Development(version("7.3.0"))
    );
    assert_eq!(
        plan_error(plan("odoo", version("16.0.0"), version("17.0.0"), &none, &catalogue)),
        PlanError::UnknownProfile("odoo".into())
    );
    let message = Error::from(PlanError::SameSeries { from: version("7.0.3"), to: version("7.0.59") }).to_string();
    assert!(message.contains("module update, not an upgrade"), "{message}");
}

#[test]
fn malformed_files_are_refused_with_the_reason() {
    let cases: &[(&str, &str)] = &[
        ("kind = \"sql\"", "kind = \"shell\""),
        ("modules = [\"account\", \"sale\"]", "module = [\"account\"]"),
        ("sql = \"UPDATE t SET a = 1;\"", "sql = \"  \""),
        ("sql = \"UPDATE t SET a = 1;\"", "args = [\"-p\"]"),
        ("sql = \"UPDATE t SET a = 1;\"", "sql = \"UPDATE t SET a = 1;\"\nscript = \"x\""),
        ("id = \"demo-1.2-always\"", "id = \"Demo Always\""),
        ("to = \"1.2\"", "to = \"1.3\""),
        ("to = \"1.2\"", "to = \"1.0\""),
        ("source = \"measured: test\"\nsql", "source = \"\"\nsql"),
        ("repeatable = true\ndescription = \"always\"", "description = \"always\""),
    ];
    for (from, to) in cases {
        assert!(PAIR_1_0_TO_1_2.contains(from), "{from}");
        let broken = PAIR_1_0_TO_1_2.replacen(from, to, 1);
        let error = catalogue_error(catalogue_of(&[&broken]));
        assert!(error.starts_with("migration catalogue test-0: "), "{error}");
    }
    let no_steps_no_note = PAIR_1_2_TO_1_4_EMPTY.replace("note = \"nothing documented\"\n", "");
    assert!(catalogue_error(catalogue_of(&[&no_steps_no_note])).contains("needs a `note`"));
    let steps_key_missing = PAIR_1_2_TO_1_4_EMPTY.replace("steps = []\n", "");
    assert!(catalogue_error(catalogue_of(&[&steps_key_missing])).contains("steps"));
}

#[test]
fn admin_steps_may_not_name_what_the_agent_supplies() {
    for reserved in ["-d", "--database=prod", "-c", "--config", "--all", "-u"] {
        let file = PAIR_1_0_TO_1_2.replace(
            "kind = \"sql\"\nrepeatable = true\ndescription = \"always\"\nsource = \"measured: test\"\nsql = \"UPDATE t SET a = 1;\"",
            &format!(
                "kind = \"admin\"\nrepeatable = true\ndescription = \"always\"\nsource = \"measured: test\"\nargs = [\"{reserved}\", \"x\"]"
            ),
        );
        assert!(file.contains("args"), "the replacement applied");
        let error = catalogue_error(catalogue_of(&[&file]));
        assert!(error.contains("supplied by the agent"), "{reserved}: {error}");
    }
}

#[test]
fn a_pair_skipping_a_known_series_is_refused() {
    let skipping = PAIR_1_2_TO_1_4_EMPTY.replace("from = \"1.2\"", "from = \"1.0\"");
    let error = catalogue_error(catalogue_of(&[PAIR_1_0_TO_1_2, PAIR_1_2_TO_1_4_EMPTY, &skipping]));
    assert!(error.contains("skips series 1.2"), "{error}");
    assert!(error.starts_with("migration catalogue test-2: "), "{error}");
}

#[test]
fn the_shipped_series_pairs_are_the_consecutive_stable_ones_from_7_0_to_8_2() {
    let pairs: Vec<String> = shipped().pairs().map(|p| format!("{} {}-{}", p.profile, p.from, p.to)).collect();
    assert_eq!(
        pairs,
        ["tryton 7.0-7.2", "tryton 7.2-7.4", "tryton 7.4-7.6", "tryton 7.6-7.8", "tryton 7.8-8.0", "tryton 8.0-8.2"]
    );
}

/// Every file in `catalogue/` is compiled in (a file added without its `SHIPPED` line would be
/// silently ignored), named after its content, and every step has a plausible body.
#[test]
fn the_shipped_files_parse_and_are_all_compiled_in() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
    let mut on_disk = Vec::new();
    collect_toml_files(&root, &mut on_disk).unwrap();
    let mut on_disk: Vec<String> =
        on_disk.iter().map(|p| p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/")).collect();
    on_disk.sort();
    let compiled: Vec<String> = SHIPPED.iter().map(|(path, _)| path.to_string()).collect();
    assert_eq!(on_disk, compiled);

    for (path, text) in SHIPPED {
        assert_eq!(std::fs::read_to_string(root.join(path)).unwrap(), *text, "{path}");
        let file: PairFile = toml::from_str(text).unwrap();
        assert_eq!(*path, format!("{}/{}-{}.toml", file.profile, file.from, file.to), "named after its pair");
    }

    for pair in shipped().pairs() {
        for step in &pair.steps {
            let id = &step.id;
            assert!(id.starts_with(&format!("{}-{}-", pair.profile, pair.to)), "{id} names its target series");
            assert!(
                step.source.starts_with("https://docs.tryton.org/") || step.source.starts_with("measured: "),
                "{id}: source is Tryton's notes or a measurement"
            );
            match &step.action {
                StepAction::Sql { sql } => {
                    let statements: Vec<&str> = sql.split(';').map(str::trim).filter(|s| !s.is_empty()).collect();
                    assert!(!statements.is_empty() && sql.trim_end().ends_with(';'), "{id}: statements end with ;");
                    for statement in statements {
                        let verb = statement.split_whitespace().next().unwrap();
                        assert!(["UPDATE", "DELETE", "ALTER", "INSERT"].contains(&verb), "{id}: {statement}");
                        assert_eq!(statement.matches('"').count() % 2, 0, "{id}: balanced quotes");
                        assert_eq!(statement.matches('\'').count() % 2, 0, "{id}: balanced quotes");
                        assert_eq!(statement.matches('(').count(), statement.matches(')').count(), "{id}");
                    }
                }
                StepAction::Script { script } => {
                    assert!(script.contains("pool.get("), "{id}: a console script uses the pool");
                    assert!(script.trim_end().ends_with("transaction.commit()"), "{id}: commits its work");
                }
                StepAction::Admin { args } => assert!(args.iter().all(|a| a.starts_with('-') || a == "admin"), "{id}"),
            }
        }
    }
}

#[test]
fn a_plan_serializes_for_the_report() {
    let plan = plan("tryton", version("7.4.0"), version("7.6.0"), &BTreeSet::new(), &shipped()).unwrap();
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["from"], "7.4.0");
    assert_eq!(json["hops"][0]["to"], "7.6");
    assert_eq!(json["hops"][0]["pre"][0]["kind"], "sql");
    assert_eq!(json["hops"][0]["post"][0]["args"][0], "-p");
    assert_eq!(json["hops"][0]["skipped"].as_array().unwrap().len(), 3);
}
