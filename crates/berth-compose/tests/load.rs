//! Loading whole projects from temporary directories (no daemon, no root).

use std::collections::BTreeMap;
use std::path::Path;

use berth_compose::{load, ErrorKind, LoadOptions};

fn write(dir: &Path, name: &str, text: &str) {
    if let Some(p) = dir.join(name).parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(dir.join(name), text).unwrap();
}

fn opts(dir: &Path) -> LoadOptions {
    LoadOptions {
        cwd: dir.to_path_buf(),
        ..Default::default()
    }
}

const APP: &str = r#"
services:
  proxy:
    image: busybox
    command: httpd -f -p 80
    ports: ["127.0.0.1:${PORT:-8080}:80"]
    depends_on:
      app:
        condition: service_started
    networks: [front, default]
  app:
    build: ./app
    environment:
      - MODE=${MODE}
      - FROM_ENV
    deploy:
      replicas: ${REPLICAS:-2}
      resources:
        limits: {cpus: 0.5, memory: 64M}
    depends_on: [db]
    labels: {tier: app}
  db:
    image: busybox
    volumes: [data:/data, ./conf:/etc/conf:ro]
    healthcheck:
      test: test -f /data/ok
      interval: 1s
      retries: 3
    restart: unless-stopped
    stop_grace_period: 5s
    init: true
    extra_hosts: {gw: 10.0.0.1}
  debug:
    image: busybox
    profiles: [debug]
networks:
  front: {}
volumes:
  data:
  ext:
    external: true
x-common: &c {a: 1}
"#;

#[test]
fn loads_normalises_and_orders() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("My_App.Dir");
    write(&root, "compose.yaml", APP);
    write(&root, ".env", "MODE=prod\nREPLICAS=3\n");
    let mut o = opts(&root);
    o.environ = BTreeMap::from([
        ("FROM_ENV".to_string(), "x".to_string()),
        ("REPLICAS".to_string(), "4".to_string()),
    ]);
    let p = load(&o).unwrap();
    assert_eq!(p.name, "my_appdir");
    assert_eq!(p.start_order().unwrap(), ["db", "app", "proxy"]);
    let app = &p.services["app"];
    assert_eq!(app.replicas(), 4, "environment wins over .env");
    assert_eq!(app.environment["MODE"].as_deref(), Some("prod"));
    assert_eq!(app.environment["FROM_ENV"].as_deref(), Some("x"));
    assert_eq!(
        app.build.as_ref().unwrap().context,
        root.join("app").to_string_lossy()
    );
    let lim = app
        .deploy
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap();
    assert_eq!(
        (lim.cpus.as_deref(), lim.memory.as_deref()),
        (Some("0.5"), Some("64M"))
    );
    let proxy = &p.services["proxy"];
    assert_eq!(proxy.ports[0].published.as_deref(), Some("8080"));
    assert_eq!(proxy.depends_on["app"].condition, "service_started");
    let db = &p.services["db"];
    assert_eq!(
        db.healthcheck.as_ref().unwrap().test,
        ["CMD-SHELL", "test -f /data/ok"]
    );
    assert_eq!(db.volumes[1].kind, "bind");
    assert_eq!(
        db.volumes[1].source.as_deref(),
        Some(root.join("conf").to_str().unwrap())
    );
    assert!(db.volumes[1].read_only);
    assert_eq!(db.extra_hosts, ["gw:10.0.0.1"]);
    assert!(db.networks.contains_key("default"));
    assert!(!p.services.contains_key("debug"));
    assert!(p.disabled_services.contains_key("debug"));
    assert_eq!(
        p.networks["default"].name.as_deref(),
        Some("my_appdir_default")
    );
    assert_eq!(p.volumes["data"].name.as_deref(), Some("my_appdir_data"));
    assert_eq!(p.volumes["ext"].name.as_deref(), Some("ext"));

    let yaml = p.to_yaml().unwrap();
    assert!(yaml.starts_with("name: my_appdir\n"), "{yaml}");
    assert!(yaml.contains("CMD-SHELL"));
    assert!(!yaml.contains("x-common"));
    // the rendered config loads again to the same model
    let d2 = tempfile::tempdir().unwrap();
    write(d2.path(), "compose.yaml", &yaml);
    let p2 = load(&opts(d2.path())).unwrap();
    assert_eq!(p2.services, p.services);

    o.profiles = vec!["debug".into()];
    assert!(load(&o).unwrap().services.contains_key("debug"));
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    imagee: x\n",
    );
    let e = load(&opts(d.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    let m = e.to_string();
    assert!(
        m.contains("compose.yaml:4: services.web.imagee: unknown field `imagee`"),
        "{m}"
    );
}

#[test]
fn bad_type_names_key() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    deploy:\n      replicas: lots\n",
    );
    let m = load(&opts(d.path())).unwrap_err().to_string();
    assert!(
        m.contains("compose.yaml:5: services.web.deploy.replicas: invalid number"),
        "{m}"
    );
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web:\n    image: [a]\n",
    );
    let m = load(&opts(d.path())).unwrap_err().to_string();
    assert!(m.contains(":3: services.web.image"), "{m}");
}

#[test]
fn syntax_error_has_line() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web:\n    image: [busybox\n",
    );
    let e = load(&opts(d.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Syntax);
    assert!(e.to_string().contains("line"), "{e}");
}

#[test]
fn required_variable() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web:\n    image: ${IMG:?set IMG}\n",
    );
    let e = load(&opts(d.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interpolation);
    let m = e.to_string();
    assert!(
        m.contains("services.web.image (line 3)") && m.contains("IMG") && m.contains("set IMG"),
        "{m}"
    );
}

#[test]
fn env_file_flag_replaces_dotenv() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "compose.yaml", "services:\n  web:\n    image: busybox:${TAG}\n    env_file: web.env\n    environment: {B: own}\n");
    write(d.path(), ".env", "TAG=dot\n");
    write(d.path(), "other.env", "TAG=other\n");
    write(d.path(), "web.env", "A=1\nB=2\n");
    let p = load(&opts(d.path())).unwrap();
    assert_eq!(p.services["web"].image.as_deref(), Some("busybox:dot"));
    assert_eq!(p.services["web"].environment["A"].as_deref(), Some("1"));
    assert_eq!(p.services["web"].environment["B"].as_deref(), Some("own"));
    let mut o = opts(d.path());
    o.env_files = vec!["other.env".into()];
    assert_eq!(
        load(&o).unwrap().services["web"].image.as_deref(),
        Some("busybox:other")
    );
}

#[test]
fn billion_laughs_is_bounded() {
    let d = tempfile::tempdir().unwrap();
    let mut y = String::from(
        "x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let r = format!("*{}", w[0]);
        y.push_str(&format!(
            "x-{}: &{} [{r},{r},{r},{r},{r},{r},{r},{r},{r}]\n",
            w[1], w[1]
        ));
    }
    y.push_str("services: {}\n");
    write(d.path(), "compose.yaml", &y);
    let e = load(&opts(d.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
}

#[test]
fn huge_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut y = String::from("services: {}\n");
    let pad = format!("# {}\n", "x".repeat(1000));
    while y.len() <= 10 << 20 {
        y.push_str(&pad);
    }
    write(d.path(), "compose.yaml", &y);
    assert_eq!(
        load(&opts(d.path())).unwrap_err().kind(),
        ErrorKind::TooLarge
    );
}

#[test]
fn depends_on_cycle() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: {a: {condition: service_healthy}}}\n",
    );
    let e = load(&opts(d.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Dependency);
    let path = d.path().join("compose.yaml");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: services.a.depends_on: dependency cycle detected: a -> b -> a",
            path.display()
        )
    );
}

#[test]
fn merges_files_by_spec_rules() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "name: base\nservices:\n  web:\n    image: a\n    command: [one, two]\n    environment: [A=1, B=2]\n    ports: ['80']\n    volumes: ['v:/data', './x:/x']\nvolumes: {v: {}}\n",
    );
    write(
        d.path(),
        "override.yaml",
        "services:\n  web:\n    image: b\n    command: three\n    environment: {B: 3, C: 4}\n    ports: ['81']\n    volumes: ['./y:/data']\n",
    );
    let mut o = opts(d.path());
    o.files = vec!["compose.yaml".into(), "override.yaml".into()];
    let p = load(&o).unwrap();
    assert_eq!(p.name, "base");
    let w = &p.services["web"];
    assert_eq!(w.image.as_deref(), Some("b"));
    assert_eq!(
        w.command,
        Some(berth_compose::model::Command::Shell("three".into()))
    );
    let env: Vec<(&str, &str)> = w
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(env, [("A", "1"), ("B", "3"), ("C", "4")]);
    assert_eq!(
        w.ports.iter().map(|p| p.target).collect::<Vec<_>>(),
        [80, 81]
    );
    assert_eq!(w.volumes.len(), 2);
    assert_eq!(w.volumes[0].kind, "bind", "same target replaced");
}

#[test]
fn extends_same_and_other_file() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "common.yaml",
        "services:\n  base:\n    image: busybox\n    environment: {A: '1'}\n    labels: [l=1]\n",
    );
    write(
        d.path(),
        "compose.yaml",
        "services:\n  mid:\n    extends: {file: common.yaml, service: base}\n    environment: {B: '2'}\n  top:\n    extends: mid\n    user: nobody\n",
    );
    let p = load(&opts(d.path())).unwrap();
    let t = &p.services["top"];
    assert_eq!(t.image.as_deref(), Some("busybox"));
    assert_eq!(t.environment.len(), 2);
    assert_eq!(t.labels["l"], "1");
    assert_eq!(t.user.as_deref(), Some("nobody"));
    assert!(t.extends.is_none());

    write(
        d.path(),
        "compose.yaml",
        "services:\n  a: {image: x, extends: b}\n  b: {image: x, extends: a}\n",
    );
    assert_eq!(
        load(&opts(d.path())).unwrap_err().kind(),
        ErrorKind::Dependency
    );
}

#[test]
fn project_name_rules() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "compose.yaml", "name: fromfile\nservices: {}\n");
    assert_eq!(load(&opts(d.path())).unwrap().name, "fromfile");
    let mut o = opts(d.path());
    o.environ
        .insert("COMPOSE_PROJECT_NAME".into(), "fromenv".into());
    assert_eq!(load(&o).unwrap().name, "fromenv");
    o.project_name = Some("flag".into());
    assert_eq!(load(&o).unwrap().name, "flag");
    o.project_name = Some("Bad Name".into());
    assert_eq!(load(&o).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(
        berth_compose::load::normalize_project_name("-_My.Proj 1"),
        "myproj1"
    );
}

#[test]
fn finds_file_in_parent_and_docker_compose_name() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("proj");
    write(
        &root,
        "docker-compose.yml",
        "services:\n  web: {image: busybox}\n",
    );
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    let p = load(&opts(&root.join("sub/deeper"))).unwrap();
    assert_eq!(p.name, "proj");
    assert_eq!(p.working_dir, root);
    let empty = tempfile::tempdir().unwrap();
    // a tempdir under /tmp has no compose file above it unless someone put one in /tmp
    if berth_compose::load::find_compose_file(empty.path()).is_err() {
        assert_eq!(load(&opts(empty.path())).unwrap_err().kind(), ErrorKind::Io);
    }
}

#[test]
fn undefined_network_and_volume() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web: {image: x, networks: [nope]}\n",
    );
    assert!(load(&opts(d.path()))
        .unwrap_err()
        .to_string()
        .contains("undefined network \"nope\""));
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web: {image: x, volumes: ['nv:/d']}\n",
    );
    assert!(load(&opts(d.path()))
        .unwrap_err()
        .to_string()
        .contains("undefined volume \"nv\""));
    write(d.path(), "compose.yaml", "services:\n  web: {command: x}\n");
    assert!(load(&opts(d.path()))
        .unwrap_err()
        .to_string()
        .contains("neither an image nor a build"));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let y = format!(
        "services: {{}}\nx-deep: {}{}\n",
        "[".repeat(1_000_000),
        "]".repeat(1_000_000)
    );
    write(d.path(), "compose.yaml", &y);
    let e = load(&opts(d.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Syntax);
    assert!(
        e.to_string()
            .contains("nesting deeper than 256 levels at line 2"),
        "{e}"
    );
}

#[test]
fn config_escapes_dollars_and_round_trips() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    command: echo $$HOME ${X:-x}\n",
    );
    let p = load(&opts(d.path())).unwrap();
    assert_eq!(
        p.services["web"].command,
        Some(berth_compose::model::Command::Shell("echo $HOME x".into()))
    );
    let yaml = p.to_yaml().unwrap();
    assert!(yaml.contains("echo $$HOME x"), "{yaml}");
    write(d.path(), "compose.yaml", &yaml);
    assert_eq!(load(&opts(d.path())).unwrap().services, p.services);
}

#[test]
fn explicit_services_and_dependencies() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  db: {image: x, profiles: [tools]}\n  migrate: {image: x, profiles: [tools], depends_on: [db]}\n  web: {image: x}\n  proxy: {image: x, depends_on: [web]}\n",
    );
    let mut p = load(&opts(d.path())).unwrap();
    assert_eq!(
        p.with_dependencies(&["proxy".into()]).unwrap(),
        ["web", "proxy"]
    );
    assert!(p.with_dependencies(&["migrate".into()]).is_err());
    p.enable_services(&["migrate".into()]).unwrap();
    assert_eq!(
        p.with_dependencies(&["migrate".into()]).unwrap(),
        ["db", "migrate"]
    );
    assert_eq!(
        p.enable_services(&["nope".into()]).unwrap_err().kind(),
        ErrorKind::Invalid
    );
}

#[test]
fn override_file_compose_file_and_profiles_env() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web: {image: a}\n  dbg: {image: x, profiles: [debug]}\n",
    );
    write(
        d.path(),
        "compose.override.yaml",
        "services:\n  web: {image: b}\n",
    );
    write(d.path(), "alt.yaml", "services:\n  web: {image: c}\n");
    let p = load(&opts(d.path())).unwrap();
    assert_eq!(p.services["web"].image.as_deref(), Some("b"));
    assert_eq!(p.files.len(), 2);
    let mut o = opts(d.path());
    o.environ
        .insert("COMPOSE_FILE".into(), "compose.yaml:alt.yaml".into());
    o.environ.insert("COMPOSE_PROFILES".into(), "debug".into());
    let p = load(&o).unwrap();
    assert_eq!(p.services["web"].image.as_deref(), Some("c"));
    assert!(p.services.contains_key("dbg"));
}

#[test]
fn flow_style_unknown_key_has_line() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  a: {image: x}\n  web: {image: x, imagee: y}\n",
    );
    let m = load(&opts(d.path())).unwrap_err().to_string();
    assert!(m.contains("compose.yaml:3: services.web.imagee"), "{m}");
}

#[test]
fn invalid_service_name() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  'we b': {image: x}\n",
    );
    assert!(load(&opts(d.path()))
        .unwrap_err()
        .to_string()
        .contains("invalid service name"));
}

#[test]
fn legacy_keys_load() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "docker-compose.yml",
        "version: '3.8'\nservices:\n  web:\n    image: x\n    links: [db]\n    logging: {driver: json-file}\n    sysctls: [net.core.somaxconn=1024]\n    shm_size: 64m\n    networks: [n]\nnetworks:\n  n:\n    external: {name: real}\n",
    );
    let p = load(&opts(d.path())).unwrap();
    assert!(p.networks["n"].external);
    assert_eq!(p.networks["n"].name.as_deref(), Some("real"));
    assert_eq!(p.services["web"].sysctls["net.core.somaxconn"], "1024");
    assert_eq!(p.services["web"].links, ["db"]);
}
