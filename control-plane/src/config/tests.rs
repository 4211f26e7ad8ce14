use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn file(yaml: &str) -> Layer {
    Layer::from_yaml(yaml).unwrap()
}

const HOME: (&str, &str) = ("HOME", "/home/ada");

#[test]
fn defaults_are_the_embedded_mode() {
    let settings = Settings::from_sources(Layer::default(), &env(&[HOME]), Layer::default()).unwrap();
    assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(settings.data_dir, PathBuf::from("/home/ada/.local/share/tenantry"));
    assert_eq!(settings.database_url(), "sqlite:/home/ada/.local/share/tenantry/control-plane.db");
    assert_eq!(settings.provisioner, ProvisionerSetting::None);
    assert_eq!(settings.tls, None);
    assert_eq!(settings.redis_url, None);
    assert_eq!((settings.auth.issuer.as_str(), settings.auth.audience.as_str()), ("tenantry", "tenantry-api"));
    assert_eq!(settings.auth.token_ttl, Duration::from_secs(3600));
    assert_eq!(settings.auth.signup_token_ttl, Duration::from_secs(86_400));
    assert_eq!(settings.signup, SignupSettings { per_minute: 10, burst: 5 });
    assert_eq!(settings.max_body_bytes, 65_536);
    assert_eq!(settings.webhook.max_attempts, 12);
    assert_eq!(settings.database_max_connections, 32);
    assert_eq!(settings.default_erp_version, DEFAULT_ERP_VERSION);
    assert_eq!(settings.log_format, LogFormat::Text);

    let xdg = Settings::from_sources(Layer::default(), &env(&[HOME, ("XDG_DATA_HOME", "/data")]), Layer::default());
    assert_eq!(xdg.unwrap().data_dir, PathBuf::from("/data/tenantry"));
    let nowhere = Settings::from_sources(Layer::default(), &env(&[]), Layer::default()).unwrap_err();
    assert!(matches!(nowhere, ConfigError::NoDataDir), "{nowhere}");
}

#[test]
fn a_cluster_is_used_when_one_is_reachable() {
    for var in ["KUBECONFIG", "KUBERNETES_SERVICE_HOST"] {
        let settings = Settings::from_sources(Layer::default(), &env(&[HOME, (var, "x")]), Layer::default()).unwrap();
        assert_eq!(settings.provisioner, ProvisionerSetting::Cluster, "{var}");
    }
    let flags = Layer { provisioner: Some("manifests:/srv/gitops".parse().unwrap()), ..Layer::default() };
    let settings = Settings::from_sources(Layer::default(), &env(&[HOME, ("KUBECONFIG", "x")]), flags).unwrap();
    assert_eq!(settings.provisioner, ProvisionerSetting::Manifests("/srv/gitops".into()));
}

#[test]
fn file_then_env_then_flags_field_by_field() {
    let yaml = file(
        "listen: 0.0.0.0:1000\n\
         data_dir: /from/file\n\
         redis_url: redis://file/\n\
         database_max_connections: 7\n\
         signup: {per_minute: 1, burst: 2}\n\
         auth: {issuer: file-issuer, token_ttl: 2h}\n",
    );
    let vars = env(&[
        HOME,
        ("TENANTRY_LISTEN", "0.0.0.0:2000"),
        ("REDIS_URL", "redis://env/"),
        ("TENANTRY_SIGNUP_BURST", "20"),
        ("TENANTRY_TOKEN_TTL", "30m"),
        ("TENANTRY_TRUSTED_PROXIES", "10.0.0.1, ::1, 172.16.0.0/12"),
        ("TENANTRY_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
    ]);
    let flags = Layer { listen: Some("0.0.0.0:3000".parse().unwrap()), ..Layer::default() };
    let settings = Settings::from_sources(yaml.clone(), &vars, flags).unwrap();
    assert_eq!(settings.listen.port(), 3000, "a flag beats the environment and the file");
    assert_eq!(settings.redis_url.as_deref(), Some("redis://env/"), "the environment beats the file");
    assert_eq!(settings.data_dir, PathBuf::from("/from/file"), "the file beats the defaults");
    assert_eq!(settings.database_max_connections, 7);
    assert_eq!(settings.signup, SignupSettings { per_minute: 1, burst: 20 }, "merged per field, not per section");
    assert_eq!(settings.auth.issuer, "file-issuer");
    assert_eq!(settings.auth.token_ttl, Duration::from_secs(1800));
    let networks = |list: &[&str]| list.iter().map(|n| n.parse::<ipnet::IpNet>().unwrap()).collect::<Vec<_>>();
    assert_eq!(settings.trusted_proxies, networks(&["10.0.0.1/32", "::1/128", "172.16.0.0/12"]));
    assert_eq!(settings.webhook.allowed_networks, networks(&["127.0.0.0/8"]));
    let bad = Settings::from_sources(
        Layer::default(),
        &env(&[HOME, ("TENANTRY_TRUSTED_PROXIES", "proxy")]),
        Layer::default(),
    );
    assert!(bad.unwrap_err().to_string().contains("TENANTRY_TRUSTED_PROXIES"));

    let without_flags = Settings::from_sources(yaml, &vars, Layer::default()).unwrap();
    assert_eq!(without_flags.listen.port(), 2000);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let error = Layer::from_yaml("listen: 127.0.0.1:1\nlisten_port: 9\n").unwrap_err().to_string();
    assert!(error.contains("listen_port"), "{error}");
    let nested = Layer::from_yaml("auth:\n  isuer: typo\n").unwrap_err().to_string();
    assert!(nested.contains("isuer"), "{nested}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantry.yaml");
    std::fs::write(&path, "signup: {per_minute: 3, brust: 4}\n").unwrap();
    let error = Settings::load(Some(&path), Layer::default()).unwrap_err().to_string();
    assert!(error.contains("brust") && error.contains("tenantry.yaml"), "{error}");
}

#[test]
fn bad_values_are_clear_errors() {
    let error = |vars: &[(&str, &str)]| {
        let mut all = vec![HOME];
        all.extend_from_slice(vars);
        Settings::from_sources(Layer::default(), &env(&all), Layer::default()).unwrap_err().to_string()
    };
    assert!(error(&[("TENANTRY_LISTEN", "localhost")]).contains("TENANTRY_LISTEN"));
    assert!(error(&[("TENANTRY_PROVISIONER", "kubernetes")]).contains("manifests:<dir>"));
    assert!(error(&[("TENANTRY_DEFAULT_ERP_VERSION", "7.1.0")]).contains("development"));
    assert!(error(&[("TENANTRY_SIGNUP_PER_MINUTE", "0")]).contains("signup"));
    assert!(error(&[("TENANTRY_WEBHOOK_TIMEOUT", "10")]).contains("TENANTRY_WEBHOOK_TIMEOUT"));
    assert!(error(&[("TENANTRY_TRUSTED_PROXIES", "10.0.0.0/33")]).contains("10.0.0.0/33"));
    assert!(error(&[("TENANTRY_LOG_FORMAT", "xml")]).contains("json or text"));
    let short_key = error(&[("TENANTRY_JWT_KEYS", "k1:c2hvcnQ=")]);
    assert!(short_key.contains("k1") && short_key.contains("at least 32"), "{short_key}");
    let secret = error(&[("TENANTRY_SECRET_KEY", "c2VjcmV0LXNlY3JldA==")]);
    assert!(secret.contains("exactly 32") && !secret.contains("c2VjcmV0"), "{secret}");
}

#[test]
fn tls_half_configured_is_refused() {
    for (var, missing) in [("TENANTRY_TLS_CERT", "key"), ("TENANTRY_TLS_KEY", "certificate")] {
        let error =
            Settings::from_sources(Layer::default(), &env(&[HOME, (var, "/x.pem")]), Layer::default()).unwrap_err();
        assert!(matches!(error, ConfigError::TlsHalfConfigured { .. }), "{error}");
        assert!(error.to_string().contains(missing), "{error}");
    }
    // Per-field precedence still applies: the certificate from the file, the key from the env.
    let settings = Settings::from_sources(
        file("tls: {cert: /etc/tls/cert.pem}\n"),
        &env(&[HOME, ("TENANTRY_TLS_KEY", "/etc/tls/key.pem")]),
        Layer::default(),
    )
    .unwrap();
    assert_eq!(settings.tls, Some(TlsSettings { cert: "/etc/tls/cert.pem".into(), key: "/etc/tls/key.pem".into() }));
}

#[test]
fn rustls_config_loads_a_pem_pair_and_names_a_bad_file() {
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/testdata");
    let mut settings = Settings::with_data_dir("/nowhere");
    assert!(settings.rustls_config().unwrap().is_none());
    settings.tls =
        Some(TlsSettings { cert: testdata.join("localhost-cert.pem"), key: testdata.join("localhost-key.pem") });
    assert!(settings.rustls_config().unwrap().is_some());

    settings.tls =
        Some(TlsSettings { cert: testdata.join("localhost-key.pem"), key: testdata.join("localhost-key.pem") });
    let error = settings.rustls_config().unwrap_err().to_string();
    assert!(error.contains("no CERTIFICATE"), "{error}");
    settings.tls =
        Some(TlsSettings { cert: testdata.join("localhost-cert.pem"), key: testdata.join("localhost-cert.pem") });
    let error = settings.rustls_config().unwrap_err().to_string();
    assert!(error.contains("no PRIVATE KEY"), "{error}");
}

#[test]
fn generated_keys_persist_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::with_data_dir(dir.path().join("data"));

    let first = settings.resolved_auth().unwrap();
    assert_eq!(first.keys.len(), 1);
    assert!(first.keys[0].1.expose().len() >= 32);
    let again = Settings::with_data_dir(dir.path().join("data")).resolved_auth().unwrap();
    assert_eq!(first.keys, again.keys, "a restart reuses the generated key");

    let keys = settings.jwt_keys().unwrap();
    let token = keys.issue(crate::auth::Role::ProviderAdmin, None, "ops", Duration::from_secs(60)).unwrap();
    assert!(Settings::with_data_dir(dir.path().join("data")).jwt_keys().unwrap().verify(&token).is_ok());

    let sealing = settings.secret_key().unwrap();
    assert_eq!(sealing, settings.secret_key().unwrap());
    assert_ne!(sealing, [0; 32]);

    for name in [JWT_KEYS_FILE, SECRET_KEY_FILE] {
        let mode = std::fs::metadata(dir.path().join("data").join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn configured_keys_come_from_env_or_files() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("old.key");
    std::fs::write(&key_file, format!("{}\n", Secret::new(vec![2; 32]).to_base64())).unwrap();
    let vars = env(&[
        HOME,
        ("TENANTRY_JWT_KEYS", &format!("new:{}", Secret::new(vec![1; 32]).to_base64())),
        ("TENANTRY_JWT_KEY_FILES", &format!("old:{}", key_file.display())),
        ("TENANTRY_JWT_SIGNING_KID", "new"),
        ("TENANTRY_SECRET_KEY", &Secret::new(vec![9; 32]).to_base64()),
    ]);
    let settings = Settings::from_sources(Layer::default(), &vars, Layer::default()).unwrap();
    let kids: Vec<&str> = settings.auth.keys.iter().map(|(kid, _)| kid.as_str()).collect();
    assert_eq!(kids, ["new", "old"]);
    assert_eq!(settings.auth.keys[1].1.expose(), &[2; 32]);
    assert_eq!(settings.jwt_keys().unwrap().signing_kid(), "new");
    assert_eq!(settings.secret_key().unwrap(), [9; 32]);
    assert!(!dir.path().join(JWT_KEYS_FILE).exists());

    let debug = format!("{settings:?}");
    assert!(!debug.contains(&Secret::new(vec![9; 32]).to_base64()) && debug.contains("<redacted>"), "{debug}");
}

#[test]
fn urls_are_redacted_for_display() {
    assert_eq!(redact_url("postgres://app:s3cret@db:5432/tenantry"), "postgres://app:***@db:5432/tenantry");
    assert_eq!(redact_url("redis://:pw@cache:6379/0"), "redis://:***@cache:6379/0");
    assert_eq!(
        redact_url("postgres://db/x?user=a&password=b&sslmode=require"),
        "postgres://db/x?user=a&password=***&sslmode=require"
    );
    assert_eq!(redact_url("sqlite:/var/lib/tenantry/control-plane.db"), "sqlite:/var/lib/tenantry/control-plane.db");
    assert_eq!(redact_url("postgres://postgres@127.0.0.1:5432/db"), "postgres://postgres@127.0.0.1:5432/db");

    let mut settings = Settings::with_data_dir("/d");
    settings.database_url = Some("postgres://app:s3cret@db/tenantry".into());
    assert!(!format!("{settings:?}").contains("s3cret"));
}

#[test]
fn provisioner_settings_parse() {
    assert_eq!("cluster".parse(), Ok(ProvisionerSetting::Cluster));
    assert_eq!("none".parse(), Ok(ProvisionerSetting::None));
    assert_eq!("manifests:out".parse(), Ok(ProvisionerSetting::Manifests("out".into())));
    assert!("manifests:".parse::<ProvisionerSetting>().is_err());
    assert_eq!(ProvisionerSetting::Manifests("out".into()).to_string(), "manifests:out");
}
