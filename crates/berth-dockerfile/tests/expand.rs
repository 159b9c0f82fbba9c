//! Expansion of parsed instructions, driven through `ScopeState` the way the
//! builder does it.

use std::collections::BTreeMap;

use berth_dockerfile::{parse, InstructionKind, MountType, ScopeState};

fn run(text: &str, build_args: &[(&str, &str)]) -> (Vec<InstructionKind>, ScopeState) {
    let df = parse(text).expect("valid Dockerfile");
    let mut g = ScopeState::new(
        build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    );
    for d in df.meta_arg_decls() {
        g.declare_meta_arg(&d.name, d.default.as_deref(), df.escape)
            .expect("meta arg");
    }
    let mut s = g.stage(&[("HOME".into(), "/root".into())]);
    let out = df.stages[0]
        .instructions
        .iter()
        .map(|i| s.apply(i, df.escape).expect("expands").kind)
        .collect();
    (out, g)
}

const TABLE_DOCKERFILE: &str = r#"FROM busybox
ENV A=1 B="two words" C='$A literal' D=a\ b E=${A}x
LABEL "key $A"="v $B" plain=$E
ARG PORTS="80 443/udp"
EXPOSE $PORTS 8080
WORKDIR $HOME/app
USER ${U:-nobody}:${G:-nogroup}
STOPSIGNAL ${SIG:-SIGTERM}
VOLUME ["/data/$A", "$HOME"]
COPY --chown=$A:$A --chmod=${MODE:-644} src-$A dst/
ADD --checksum=$SUM https://x/$A.tgz /opt/
COPY <<EOF <<"RAW" /etc/
home is $HOME "quoted"
EOF
raw $HOME
RAW
RUN --mount=type=cache,id=cache-$A,target=/c echo $A
CMD echo $A
ONBUILD RUN echo $A
"#;

#[test]
fn table() {
    let (k, _) = run(TABLE_DOCKERFILE, &[]);
    let env = |kvs: &InstructionKind| match kvs {
        InstructionKind::Env(v) | InstructionKind::Label(v) => v
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect::<Vec<_>>(),
        other => panic!("not ENV/LABEL: {other:?}"),
    };
    let pairs = |p: &[(&str, &str)]| {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        env(&k[0]),
        pairs(&[
            ("A", "1"),
            ("B", "two words"),
            ("C", "$A literal"),
            ("D", "a b"),
            // A is not visible yet inside the same ENV.
            ("E", "x"),
        ])
    );
    assert_eq!(
        env(&k[1]),
        pairs(&[("key 1", "v two words"), ("plain", "x")])
    );
    assert_eq!(
        k[3],
        InstructionKind::Expose(vec!["80".into(), "443/udp".into(), "8080".into()])
    );
    assert_eq!(k[4], InstructionKind::Workdir("/root/app".into()));
    assert_eq!(k[5], InstructionKind::User("nobody:nogroup".into()));
    assert_eq!(k[6], InstructionKind::StopSignal("SIGTERM".into()));
    assert_eq!(
        k[7],
        InstructionKind::Volume(vec!["/data/1".into(), "/root".into()])
    );
    match &k[8] {
        InstructionKind::Copy(c) => {
            assert_eq!(c.chown.as_deref(), Some("1:1"));
            assert_eq!(c.chmod.as_deref(), Some("644"));
            assert_eq!(c.files.sources, vec!["src-1"]);
            assert_eq!(c.files.dest, "dst/");
        }
        other => panic!("{other:?}"),
    }
    match &k[9] {
        InstructionKind::Add(a) => {
            assert_eq!(a.checksum.as_deref(), Some(""));
            assert_eq!(a.files.sources, vec!["https://x/1.tgz"]);
        }
        other => panic!("{other:?}"),
    }
    match &k[10] {
        InstructionKind::Copy(c) => {
            assert_eq!(c.files.inline[0].data, "home is /root \"quoted\"\n");
            assert_eq!(c.files.inline[1].data, "raw $HOME\n");
        }
        other => panic!("{other:?}"),
    }
    match &k[11] {
        InstructionKind::Run(r) => {
            assert_eq!(r.mounts[0].kind, MountType::Cache);
            assert_eq!(r.mounts[0].id.as_deref(), Some("cache-1"));
            // The command itself is left to the shell.
            assert_eq!(r.command.args, vec!["echo $A"]);
        }
        other => panic!("{other:?}"),
    }
    match &k[12] {
        InstructionKind::Cmd(c) => assert_eq!(c.args, vec!["echo $A"]),
        other => panic!("{other:?}"),
    }
    match &k[13] {
        InstructionKind::Onbuild(o) => assert_eq!(o.expression, "RUN echo $A"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn backtick_escape_directive_applies_to_expansion() {
    let (k, _) = run("# escape=`\nFROM x\nENV P=C:\\dir Q=`$HOME R=$HOME\n", &[]);
    match &k[0] {
        InstructionKind::Env(v) => {
            assert_eq!(v[0].value, "C:\\dir");
            assert_eq!(v[1].value, "$HOME");
            assert_eq!(v[2].value, "/root");
        }
        other => panic!("{other:?}"),
    }
    // Legacy form keeps the rest of the line as the value.
    let (k, _) = run("# escape=`\nFROM x\nENV P C:\\dir `$HOME\n", &[]);
    match &k[0] {
        InstructionKind::Env(v) => assert_eq!(v[0].value, "C:\\dir $HOME"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn build_args_and_meta_args() {
    let text = "ARG BASE=alpine\nARG V\nFROM $BASE:${V:-latest}\nARG V\nARG LOCAL=d\nENV FROM_ARG=$V-$LOCAL\n";
    let df = parse(text).unwrap();
    let (k, g) = run(text, &[("V", "3.19"), ("LOCAL", "cli")]);
    assert_eq!(
        g.expand_from(&df.stages[0].base, df.escape).unwrap(),
        "alpine:3.19"
    );
    match &k[1] {
        InstructionKind::Arg(d) => assert_eq!(d[0].default.as_deref(), Some("cli")),
        other => panic!("{other:?}"),
    }
    match &k[2] {
        InstructionKind::Env(v) => assert_eq!(v[0].value, "3.19-cli"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn shell_form_copy_splits_on_whitespace_only() {
    // Like BuildKit: the shell form of COPY is split on whitespace before
    // expansion, so quotes cannot group words (use the JSON form for spaces).
    let df = parse("FROM x\nCOPY a \"dst dir/\"\n").unwrap();
    let mut s = ScopeState::default().stage(&[]);
    let e = s.apply(&df.stages[0].instructions[0], '\\').unwrap_err();
    assert!(e.message.contains("matching double-quote"), "{e}");
    let (k, _) = run("FROM x\nCOPY [\"a\", \"dst dir/\"]\n", &[]);
    match &k[0] {
        InstructionKind::Copy(c) => assert_eq!(c.files.dest, "dst dir/"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_point_at_the_instruction() {
    let df = parse("FROM x\nRUN true\nCOPY ${SRC:?set-SRC} /d\n").unwrap();
    let mut s = ScopeState::default().stage(&[]);
    s.apply(&df.stages[0].instructions[0], '\\').unwrap();
    let e = s.apply(&df.stages[0].instructions[1], '\\').unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(e.instruction.as_deref(), Some("COPY"));
    assert!(e.to_string().ends_with("SRC: set-SRC"), "{e}");
}

#[test]
fn run_heredoc_effective_command() {
    use berth_dockerfile::EffectiveCommand;
    let df = parse(
        "FROM x\nRUN <<EOF\necho a\nEOF\nRUN <<-EOF\n\t#!/usr/bin/env python3\n\tprint(1)\nEOF\nRUN cat <<A >f\nbody\nA\nRUN echo plain\nRUN [\"echo\", \"<<EOF\"]\n",
    )
    .unwrap();
    let eff: Vec<EffectiveCommand> = df.stages[0]
        .instructions
        .iter()
        .map(|i| match &i.kind {
            InstructionKind::Run(r) => r.command.effective(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        eff,
        vec![
            EffectiveCommand::Args(vec!["echo a\n".into()]),
            EffectiveCommand::Script {
                name: "EOF".into(),
                data: "#!/usr/bin/env python3\nprint(1)\n".into()
            },
            EffectiveCommand::Args(vec!["cat <<A >f\nbody\nA".into()]),
            EffectiveCommand::Args(vec!["echo plain".into()]),
            EffectiveCommand::Args(vec!["echo".into(), "<<EOF".into()]),
        ]
    );
}
