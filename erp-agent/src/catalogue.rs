//! The migration-step catalogue and the upgrade planner: the manual steps an ERP needs before
//! and after updating a database to a new series are **data, not code**. One file per (profile,
//! from series, to series); the product ships Tryton's, a provider adds their own.
//!
//! # The data format
//! A TOML file per pair of consecutive stable series, shipped as
//! `erp-agent/catalogue/<profile>/<from>-<to>.toml` (compiled into the agent):
//!
//! ```toml
//! profile = "tryton"
//! from = "7.4"                 # stable series A.B (even B)
//! to = "7.6"                   # the next stable series the catalogue knows
//! note = "…"                   # optional; required when `steps` is empty: says why nothing is needed
//! warnings = ["…"]             # optional; what a person must know that no step can do
//! steps = []                   # required: an empty list says "nothing to do", a missing file is an error
//!
//! [[steps]]                    # (instead of `steps = []`) one table per step, run in file order
//! id = "tryton-7.6-rename-ir-model-columns"   # [a-z0-9][a-z0-9._-]*, unique in the whole catalogue
//! phase = "pre"                # "pre": before the new series' update-all; "post": after it
//! kind = "sql"                 # "sql" | "admin" | "script"
//! modules = ["account"]        # optional: run only when every one of these modules is activated
//! repeatable = false           # may it run again after it ran (a resumed operation)?
//! description = "…"            # what it does, for the report
//! source = "https://…"         # where it comes from: a URL, or "measured: …"
//! sql = """…"""                # kind "sql": statements run in one transaction
//! # args = ["-p"]              # kind "admin": arguments to the ERP's admin command (trytond-admin)
//! # script = """…"""           # kind "script": Python run with the ERP's console (trytond-console)
//! ```
//!
//! What the agent supplies to each kind: `sql` runs in one transaction on the database being
//! upgraded; `admin` gets the configuration and the database from the agent (so `args` may not
//! name `-c`/`--config`, `-d`/`--database`, nor `-u`/`--update`/`--all`, which are the update
//! stage's), and for `-p` the agent provides the environment's administrator password in
//! `TRYTONPASSFILE`, never on a command line; `script` is fed to `trytond-console` on standard
//! input with `pool` and `transaction` in scope, and commits its own work with
//! `transaction.commit()` as Tryton's documented scripts do (the console rolls back whatever is
//! left). Measured with 8.2: `trytond-console` prints a script's exception and still exits 0, so
//! the runner must wrap the script (for example `exec` it inside `try`, and `sys.exit(1)` on an
//! exception) to see a failure. A step that is not `repeatable`
//! (renaming a column, inverting a sign) must not run twice on the same database: when a run
//! stops and it is unknown whether such a step committed, the operation starts the hop again
//! from its copy instead of repeating the step.
//!
//! Unknown keys are errors (a misspelt `modules` must not silently drop a condition).
//!
//! # Provider steps
//! A provider adds steps from a directory of files in the same format (every `*.toml` under it,
//! read in path order). Their steps come after the shipped steps of the same pair and phase; a
//! file for a pair the product does not ship adds that pair (and so, possibly, a new series). A
//! step id used twice anywhere in the catalogue is an error, as is a pair whose series are not
//! consecutive among the series the catalogue knows for its profile (it would skip another
//! pair's steps).
//!
//! # Planning an upgrade
//! [`plan`] chains every stable series between the two versions: the series list of a profile is
//! the set of series its pairs name (development series, odd B, never appear), and each hop is
//! its pre steps (those whose modules are all activated), the update-all with the new series,
//! then its post steps. Conditions are evaluated on the modules activated before the upgrade.
//! It refuses downgrades, an upgrade within one series (that is a module update), development
//! versions, unknown profiles and any hop without a file — a gap is an error, never "nothing to
//! do".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};
use tenantry_contract::version::{ErpSeries, ErpVersion};

use crate::{Error, Result};

/// The files shipped with the agent, by their path under `erp-agent/catalogue/`.
const SHIPPED: &[(&str, &str)] = &[
    ("tryton/7.0-7.2.toml", include_str!("../catalogue/tryton/7.0-7.2.toml")),
    ("tryton/7.2-7.4.toml", include_str!("../catalogue/tryton/7.2-7.4.toml")),
    ("tryton/7.4-7.6.toml", include_str!("../catalogue/tryton/7.4-7.6.toml")),
    ("tryton/7.6-7.8.toml", include_str!("../catalogue/tryton/7.6-7.8.toml")),
    ("tryton/7.8-8.0.toml", include_str!("../catalogue/tryton/7.8-8.0.toml")),
    ("tryton/8.0-8.2.toml", include_str!("../catalogue/tryton/8.0-8.2.toml")),
];

/// Admin-command options the agent supplies itself or that belong to the update stage.
const RESERVED_ADMIN_OPTIONS: &[&str] = &["-c", "--config", "-d", "--database", "-u", "--update", "--all"];

/// When a step runs relative to the new series' update-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Pre,
    Post,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StepAction {
    /// SQL statements run in one transaction.
    Sql { sql: String },
    /// Arguments to the ERP's admin command; the agent adds configuration and database.
    Admin { args: Vec<String> },
    /// Python run with the ERP's console.
    Script { script: String },
}

/// One manual migration step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationStep {
    pub id: String,
    pub phase: Phase,
    /// Run only when every one of these modules is activated (empty: always).
    pub modules: Vec<String>,
    #[serde(flatten)]
    pub action: StepAction,
    /// May run again on a database where it already ran.
    pub repeatable: bool,
    pub description: String,
    /// Where the step comes from: a URL, or "measured: …".
    pub source: String,
    /// The file it was read from (`shipped:tryton/7.0-7.2.toml` or a provider's path).
    pub origin: String,
}

/// Everything the catalogue knows about one upgrade between consecutive series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeriesPair {
    pub profile: String,
    #[serde(serialize_with = "as_text")]
    pub from: ErpSeries,
    #[serde(serialize_with = "as_text")]
    pub to: ErpSeries,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
    /// In order: shipped steps first, then each provider file's.
    pub steps: Vec<MigrationStep>,
    /// The files this pair was read from, in merge order.
    pub origins: Vec<String>,
}

/// The merged catalogue: shipped files, then a provider's.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pairs: BTreeMap<(String, ErpSeries, ErpSeries), SeriesPair>,
    /// Where each step id was defined, to refuse a second definition.
    step_origins: HashMap<String, String>,
}

impl Catalogue {
    /// The catalogue shipped with the agent.
    pub fn shipped() -> Result<Self> {
        Self::default().merge(SHIPPED.iter().map(|(path, text)| (format!("shipped:{path}"), (*text).to_string())))
    }

    /// The shipped catalogue with a provider's directory merged after it.
    pub fn shipped_with_provider_dir(dir: &Path) -> Result<Self> {
        Self::shipped()?.with_provider_dir(dir)
    }

    /// Merges every `*.toml` file under `dir` (recursively, in path order) after what is here.
    pub fn with_provider_dir(self, dir: &Path) -> Result<Self> {
        let mut paths = Vec::new();
        collect_toml_files(dir, &mut paths)?;
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                what: "reading a migration-step file",
                path: path.clone(),
                source,
            })?;
            sources.push((path.display().to_string(), text));
        }
        self.merge(sources)
    }

    /// Merges files given as (origin, TOML text), in order, then checks the whole catalogue.
    pub fn merge(mut self, sources: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        for (origin, text) in sources {
            self.merge_file(&origin, &text)?;
        }
        self.check_consecutive()?;
        Ok(self)
    }

    /// Every pair, ordered by profile and series.
    pub fn pairs(&self) -> impl Iterator<Item = &SeriesPair> {
        self.pairs.values()
    }

    /// The stable series the catalogue knows for a profile, in order.
    pub fn series(&self, profile: &str) -> Vec<ErpSeries> {
        let known: BTreeSet<ErpSeries> =
            self.pairs.values().filter(|p| p.profile == profile).flat_map(|p| [p.from, p.to]).collect();
        known.into_iter().collect()
    }

    fn merge_file(&mut self, origin: &str, text: &str) -> Result<()> {
        let invalid = |reason: String| Error::Catalogue { origin: origin.to_string(), reason };
        let file: PairFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let series = |text: &str| -> Result<ErpSeries> {
            let series: ErpSeries = text.parse().map_err(|_| invalid(format!("`{text}` is not a series A.B")))?;
            if series.is_development() {
                return Err(invalid(format!("{series} is a development series; upgrades run between stable series")));
            }
            Ok(series)
        };
        let (from, to) = (series(&file.from)?, series(&file.to)?);
        if from >= to {
            return Err(invalid(format!("`from` {from} must be older than `to` {to}")));
        }
        if file.profile.trim().is_empty() {
            return Err(invalid("`profile` is empty".into()));
        }
        if file.steps.is_empty() && file.note.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(invalid("an empty step list needs a `note` saying why nothing is needed".into()));
        }

        let mut steps = Vec::with_capacity(file.steps.len());
        for raw in file.steps {
            let step = raw.validate(origin).map_err(&invalid)?;
            if let Some(first) = self.step_origins.get(&step.id) {
                return Err(invalid(format!("step id `{}` is already defined in {first}", step.id)));
            }
            steps.push(step);
        }
        for step in &steps {
            self.step_origins.insert(step.id.clone(), origin.to_string());
        }

        let pair = self.pairs.entry((file.profile.clone(), from, to)).or_insert_with(|| SeriesPair {
            profile: file.profile,
            from,
            to,
            notes: Vec::new(),
            warnings: Vec::new(),
            steps: Vec::new(),
            origins: Vec::new(),
        });
        pair.origins.push(origin.to_string());
        pair.notes.extend(file.note.filter(|n| !n.trim().is_empty()));
        pair.warnings.extend(file.warnings);
        pair.steps.extend(steps);
        Ok(())
    }

    /// A pair that skips a series the catalogue knows would skip that series' steps.
    fn check_consecutive(&self) -> Result<()> {
        for pair in self.pairs.values() {
            if let Some(between) = self.series(&pair.profile).into_iter().find(|s| pair.from < *s && *s < pair.to) {
                return Err(Error::Catalogue {
                    origin: pair.origins.join(", "),
                    reason: format!(
                        "pair {} {} → {} skips series {between}; chain consecutive series instead",
                        pair.profile, pair.from, pair.to
                    ),
                });
            }
        }
        Ok(())
    }
}

fn collect_toml_files(dir: &Path, into: &mut Vec<PathBuf>) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { what: "listing provider migration steps", path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            collect_toml_files(&path, into)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            into.push(path);
        }
    }
    Ok(())
}

/// A pair file as written; checked into [`SeriesPair`] and [`MigrationStep`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PairFile {
    profile: String,
    from: String,
    to: String,
    note: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    steps: Vec<StepFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    id: String,
    phase: Phase,
    kind: StepKind,
    #[serde(default)]
    modules: Vec<String>,
    repeatable: bool,
    description: String,
    source: String,
    sql: Option<String>,
    args: Option<Vec<String>>,
    script: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StepKind {
    Sql,
    Admin,
    Script,
}

impl StepFile {
    fn validate(self, origin: &str) -> Result<MigrationStep, String> {
        let id = self.id;
        let named = |what: &str| format!("step `{id}`: {what}");
        let is_name = |s: &str, extra: &[u8]| {
            s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || extra.contains(&b))
        };
        if !is_name(&id, b".-") {
            return Err(named("the id must match [a-z0-9][a-z0-9._-]*"));
        }
        if let Some(bad) = self.modules.iter().find(|m| !is_name(m, b"")) {
            return Err(named(&format!("`{bad}` is not a module name")));
        }
        for (field, value) in [("description", &self.description), ("source", &self.source)] {
            if value.trim().is_empty() {
                return Err(named(&format!("`{field}` is empty")));
            }
        }
        let bodies = [self.sql.is_some(), self.args.is_some(), self.script.is_some()];
        if bodies.iter().filter(|b| **b).count() != 1 {
            return Err(named("give exactly one of `sql`, `args`, `script`, matching `kind`"));
        }
        let action = match (self.kind, self.sql, self.args, self.script) {
            (StepKind::Sql, Some(sql), None, None) if !sql.trim().is_empty() => StepAction::Sql { sql },
            (StepKind::Script, None, None, Some(script)) if !script.trim().is_empty() => StepAction::Script { script },
            (StepKind::Admin, None, Some(args), None) if !args.is_empty() => {
                if args.iter().any(|a| a.trim().is_empty()) {
                    return Err(named("an admin argument is empty"));
                }
                if let Some(reserved) = args
                    .iter()
                    .find(|a| RESERVED_ADMIN_OPTIONS.iter().any(|r| a == r || a.starts_with(&format!("{r}="))))
                {
                    return Err(named(&format!(
                        "`{reserved}` is supplied by the agent or belongs to the update stage, not to a step"
                    )));
                }
                StepAction::Admin { args }
            }
            _ => return Err(named("the body for its `kind` is missing or empty")),
        };
        Ok(MigrationStep {
            id,
            phase: self.phase,
            modules: self.modules,
            action,
            repeatable: self.repeatable,
            description: self.description,
            source: self.source,
            origin: origin.to_string(),
        })
    }
}

/// Why an upgrade cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the migration catalogue knows no ERP profile `{0}`")]
    UnknownProfile(String),
    #[error("{0} is a development release: upgrades run between stable series only")]
    Development(ErpVersion),
    #[error("{to} is older than {from}: downgrades are refused (restore a backup of that version instead)")]
    Downgrade { from: ErpVersion, to: ErpVersion },
    #[error("{from} and {to} are the same series: that is a module update, not an upgrade")]
    SameSeries { from: ErpVersion, to: ErpVersion },
    #[error(
        "the migration catalogue has no file for {profile} {from} → {to}; a missing pair is an error, not \"nothing to do\""
    )]
    MissingPair { profile: String, from: ErpSeries, to: ErpSeries },
}

/// A step left out because a module it needs is not activated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedStep {
    pub id: String,
    pub missing_modules: Vec<String>,
}

/// One series to the next: pre steps, update-all with `to`, post steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    #[serde(serialize_with = "as_text")]
    pub from: ErpSeries,
    #[serde(serialize_with = "as_text")]
    pub to: ErpSeries,
    pub pre: Vec<MigrationStep>,
    pub post: Vec<MigrationStep>,
    pub skipped: Vec<SkippedStep>,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

/// Everything to run, in order, to upgrade from one version to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub profile: String,
    #[serde(serialize_with = "as_text")]
    pub from: ErpVersion,
    #[serde(serialize_with = "as_text")]
    pub to: ErpVersion,
    pub hops: Vec<Hop>,
}

/// One thing to do, in the order [`Plan::stages`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage<'a> {
    Pre(&'a Hop, &'a MigrationStep),
    /// The ERP's update-all with the hop's new series (`hop.to`).
    UpdateAll(&'a Hop),
    Post(&'a Hop, &'a MigrationStep),
}

impl Stage<'_> {
    /// A name unique within the plan and stable across runs, for a journal:
    /// `7.0-7.2/pre/<step id>`, `7.0-7.2/update-all`, `7.0-7.2/post/<step id>`.
    pub fn key(&self) -> String {
        match self {
            Self::Pre(hop, step) => format!("{}-{}/pre/{}", hop.from, hop.to, step.id),
            Self::UpdateAll(hop) => format!("{}-{}/update-all", hop.from, hop.to),
            Self::Post(hop, step) => format!("{}-{}/post/{}", hop.from, hop.to, step.id),
        }
    }
}

impl Plan {
    /// Every stage of every hop, in the order to run them.
    pub fn stages(&self) -> Vec<Stage<'_>> {
        let mut stages = Vec::new();
        for hop in &self.hops {
            stages.extend(hop.pre.iter().map(|step| Stage::Pre(hop, step)));
            stages.push(Stage::UpdateAll(hop));
            stages.extend(hop.post.iter().map(|step| Stage::Post(hop, step)));
        }
        stages
    }
}

/// Plans the upgrade of an environment of `profile` from `from` to `to`, with the modules
/// activated before the upgrade; see the module documentation for the rules.
pub fn plan(
    profile: &str,
    from: ErpVersion,
    to: ErpVersion,
    activated_modules: &BTreeSet<String>,
    catalogue: &Catalogue,
) -> Result<Plan> {
    let known = catalogue.series(profile);
    if known.is_empty() {
        return Err(PlanError::UnknownProfile(profile.to_string()).into());
    }
    for version in [from, to] {
        if version.is_development() {
            return Err(PlanError::Development(version).into());
        }
    }
    let (from_series, to_series) = (from.erp_series(), to.erp_series());
    if to_series < from_series {
        return Err(PlanError::Downgrade { from, to }.into());
    }
    if to_series == from_series {
        return Err(PlanError::SameSeries { from, to }.into());
    }

    let mut chain = vec![from_series];
    chain.extend(known.into_iter().filter(|s| from_series < *s && *s < to_series));
    chain.push(to_series);
    let mut hops = Vec::with_capacity(chain.len() - 1);
    for step in chain.windows(2) {
        let (hop_from, hop_to) = (step[0], step[1]);
        let pair = catalogue
            .pairs
            .get(&(profile.to_string(), hop_from, hop_to))
            .ok_or_else(|| PlanError::MissingPair { profile: profile.to_string(), from: hop_from, to: hop_to })?;
        let mut hop = Hop {
            from: hop_from,
            to: hop_to,
            pre: Vec::new(),
            post: Vec::new(),
            skipped: Vec::new(),
            notes: pair.notes.clone(),
            warnings: pair.warnings.clone(),
        };
        for step in &pair.steps {
            let missing: Vec<String> =
                step.modules.iter().filter(|m| !activated_modules.contains(*m)).cloned().collect();
            if !missing.is_empty() {
                hop.skipped.push(SkippedStep { id: step.id.clone(), missing_modules: missing });
            } else if step.phase == Phase::Pre {
                hop.pre.push(step.clone());
            } else {
                hop.post.push(step.clone());
            }
        }
        hops.push(hop);
    }
    Ok(Plan { profile: profile.to_string(), from, to, hops })
}

fn as_text<T: fmt::Display, S: Serializer>(value: &T, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[cfg(test)]
mod tests;
