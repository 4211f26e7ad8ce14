//! ERP profiles: per ERP, which images, commands, ports, probes and update commands the server
//! and web-client roles use.
//!
//! - `tryton` (default): `trytond` from the official `tryton/tryton:<A.B>` image serves
//!   JSON-RPC; the web client is an unprivileged nginx serving `sao` (copied out of the same
//!   Tryton image by an init container) and proxying RPC to the server. Updates run
//!   `trytond-admin -d DB --all` (every module) or `-u MODULE…`.
//! - `odoo`: `odoo:<A.B>` serves everything; the web role is the same nginx, proxying it all.
//!   Updates run `odoo -d DB -u all --stop-after-init`.
//! - `custom`: every field from the Tenant's `erp.custom`.

use crate::api::CustomProfile;
use crate::version::ErpVersion;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    Tryton,
    Odoo,
    Custom,
}

impl ProfileKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tryton => "tryton",
            Self::Odoo => "odoo",
            Self::Custom => "custom",
        }
    }
}

/// How a role's image is tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// `<repository>:<A.B>`: official ERP images are published per release series.
    Series(String),
    /// `<repository>:<A.B.C>`.
    Version(String),
    /// A complete reference, whatever the ERP version (the nginx of the web role).
    Fixed(String),
}

impl Image {
    pub fn reference(&self, version: &ErpVersion) -> String {
        match self {
            Self::Series(repository) => format!("{repository}:{}", version.series()),
            Self::Version(repository) => format!("{repository}:{version}"),
            Self::Fixed(reference) => reference.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http { path: String },
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub image: Image,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub port: i32,
    pub readiness: Probe,
    pub liveness: Option<Probe>,
}

/// Static files the web role serves, copied from another image at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebAssets {
    pub image: Image,
    /// Directory in `image` holding the files.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `trytond.conf`; secrets come from `TRYTOND_<SECTION>__<OPTION>` variables.
    Tryton,
    /// `odoo.conf` `[options]`; the master password is appended at start-up from its Secret.
    Odoo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub kind: ProfileKind,
    pub server: Role,
    pub web: Role,
    pub web_assets: Option<WebAssets>,
    /// Initialises or updates every module; `{config}` and `{database}` are replaced.
    pub update_all: Vec<String>,
    /// Updates the modules listed in `{modules}` (one argument each).
    pub update_modules: Vec<String>,
    pub config_format: Option<ConfigFormat>,
    /// Where the server's configuration file is mounted.
    pub config_path: String,
    /// Where the server keeps its file store (the filestore volume).
    pub data_dir: String,
    /// The image's unprivileged user.
    pub run_as_user: i64,
}

/// Image defaults, set per installation (operator flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDefaults {
    pub tryton: String,
    pub odoo: String,
    pub web_proxy: String,
    pub postgres: String,
    /// The ERP agent's image (`tenantry-agent`), which backs tenants up from Jobs.
    pub agent: String,
}

impl Default for ImageDefaults {
    fn default() -> Self {
        Self {
            tryton: "tryton/tryton".into(),
            odoo: "odoo".into(),
            web_proxy: "nginxinc/nginx-unprivileged:1.27-alpine".into(),
            postgres: "postgres:15".into(),
            agent: concat!("tenantry/erp-agent:", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

pub const SERVER_CONFIG_DIR: &str = "/etc/erp";
const WEB_PORT: i32 = 8080;

impl Profile {
    pub fn tryton(images: &ImageDefaults, image_override: Option<&str>) -> Self {
        let repository = image_override.unwrap_or(&images.tryton).to_string();
        let config = format!("{SERVER_CONFIG_DIR}/trytond.conf");
        Self {
            kind: ProfileKind::Tryton,
            server: Role {
                image: Image::Series(repository.clone()),
                command: vec!["trytond".into()],
                args: vec!["-c".into(), config.clone()],
                port: 8000,
                readiness: Probe::Tcp,
                liveness: Some(Probe::Tcp),
            },
            web: web_proxy_role(images),
            web_assets: Some(WebAssets { image: Image::Series(repository), path: "/var/lib/trytond/www".into() }),
            // `--email` because, on a new database, trytond-admin otherwise stops to ask for the
            // admin's address on a terminal a Job does not have; the admin changes it in the ERP.
            update_all: strings(&[
                "trytond-admin",
                "-c",
                "{config}",
                "-d",
                "{database}",
                "--all",
                "--email",
                "admin@localhost",
            ]),
            update_modules: strings(&[
                "trytond-admin",
                "-c",
                "{config}",
                "-d",
                "{database}",
                "--activate-dependencies",
                "-u",
                "{modules}",
            ]),
            config_format: Some(ConfigFormat::Tryton),
            config_path: config,
            data_dir: "/var/lib/trytond/db".into(),
            run_as_user: 1000,
        }
    }

    pub fn odoo(images: &ImageDefaults, image_override: Option<&str>) -> Self {
        let repository = image_override.unwrap_or(&images.odoo).to_string();
        let config = format!("{SERVER_CONFIG_DIR}/odoo.conf");
        Self {
            kind: ProfileKind::Odoo,
            server: Role {
                image: Image::Series(repository),
                command: vec!["odoo".into()],
                args: vec!["-c".into(), config.clone()],
                port: 8069,
                readiness: Probe::Http { path: "/web/health".into() },
                liveness: Some(Probe::Http { path: "/web/health".into() }),
            },
            web: web_proxy_role(images),
            web_assets: None,
            update_all: strings(&["odoo", "-c", "{config}", "-d", "{database}", "-u", "all", "--stop-after-init"]),
            update_modules: strings(&[
                "odoo",
                "-c",
                "{config}",
                "-d",
                "{database}",
                "-u",
                "{modules}",
                "--stop-after-init",
            ]),
            config_format: Some(ConfigFormat::Odoo),
            config_path: config,
            data_dir: "/var/lib/odoo".into(),
            run_as_user: 101,
        }
    }

    pub fn custom(spec: &CustomProfile) -> Self {
        let role = |r: &crate::api::RoleSpec| Role {
            image: Image::Version(r.image.clone()),
            command: r.command.clone(),
            args: r.args.clone(),
            port: r.port,
            readiness: Probe::Http { path: r.readiness_path.clone() },
            liveness: r.liveness_path.clone().map(|path| Probe::Http { path }),
        };
        Self {
            kind: ProfileKind::Custom,
            server: role(&spec.server),
            web: role(&spec.web),
            web_assets: None,
            update_all: spec.update_all_command.clone(),
            update_modules: Vec::new(),
            config_format: None,
            config_path: format!("{SERVER_CONFIG_DIR}/server.conf"),
            data_dir: "/var/lib/erp".into(),
            run_as_user: 1000,
        }
    }

    /// `update_all` for `database`.
    pub fn update_all_command(&self, database: &str) -> Vec<String> {
        self.update_all
            .iter()
            .map(|a| a.replace("{config}", &self.config_path).replace("{database}", database))
            .collect()
    }

    /// `update_modules` for `database` and `modules`; `None` when the profile has none or there
    /// is nothing to update.
    pub fn update_modules_command(&self, database: &str, modules: &[String]) -> Option<Vec<String>> {
        if self.update_modules.is_empty() || modules.is_empty() {
            return None;
        }
        let mut command = Vec::new();
        for arg in &self.update_modules {
            if arg == "{modules}" {
                match self.kind {
                    // Odoo takes one comma-separated list.
                    ProfileKind::Odoo => command.push(modules.join(",")),
                    _ => command.extend(modules.iter().cloned()),
                }
            } else {
                command.push(arg.replace("{config}", &self.config_path).replace("{database}", database));
            }
        }
        Some(command)
    }
}

fn web_proxy_role(images: &ImageDefaults) -> Role {
    Role {
        image: Image::Fixed(images.web_proxy.clone()),
        command: Vec::new(),
        args: Vec::new(),
        port: WEB_PORT,
        readiness: Probe::Http { path: "/healthz".into() },
        liveness: Some(Probe::Http { path: "/healthz".into() }),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> ErpVersion {
        text.parse().unwrap()
    }

    #[test]
    fn official_images_are_tagged_by_series() {
        let tryton = Profile::tryton(&ImageDefaults::default(), None);
        assert_eq!(tryton.server.image.reference(&v("7.0.59")), "tryton/tryton:7.0");
        assert_eq!(tryton.web_assets.unwrap().image.reference(&v("7.0.59")), "tryton/tryton:7.0");
        assert_eq!(tryton.web.image.reference(&v("7.0.59")), "nginxinc/nginx-unprivileged:1.27-alpine");
        let odoo = Profile::odoo(&ImageDefaults::default(), Some("registry.example/odoo"));
        assert_eq!(odoo.server.image.reference(&v("17.0.3")), "registry.example/odoo:17.0");
    }

    #[test]
    fn update_commands_name_the_database() {
        let tryton = Profile::tryton(&ImageDefaults::default(), None);
        assert_eq!(
            tryton.update_all_command("production"),
            ["trytond-admin", "-c", "/etc/erp/trytond.conf", "-d", "production", "--all", "--email", "admin@localhost"]
        );
        assert_eq!(
            tryton.update_modules_command("test", &["party".into(), "sale".into()]).unwrap(),
            [
                "trytond-admin",
                "-c",
                "/etc/erp/trytond.conf",
                "-d",
                "test",
                "--activate-dependencies",
                "-u",
                "party",
                "sale"
            ]
        );
        assert_eq!(tryton.update_modules_command("test", &[]), None);
        let odoo = Profile::odoo(&ImageDefaults::default(), None);
        assert_eq!(
            odoo.update_modules_command("production", &["sale".into(), "stock".into()]).unwrap(),
            ["odoo", "-c", "/etc/erp/odoo.conf", "-d", "production", "-u", "sale,stock", "--stop-after-init"]
        );
    }
}
