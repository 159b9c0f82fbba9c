//! How long libseccomp takes to build and compile berth's default filter (what every container
//! start pays inside the runtime): `cargo run --release -p berth-runtime --example seccomp_cost`.
use libseccomp::*;
use serde_json::Value;

fn build(profile: &Value, arches: &[ScmpArch]) -> ScmpFilterContext {
    let mut ctx = ScmpFilterContext::new(ScmpAction::Errno(38)).unwrap();
    for a in arches {
        ctx.add_arch(*a).unwrap();
    }
    for s in profile["syscalls"].as_array().unwrap() {
        let action = match s["action"].as_str().unwrap() {
            "SCMP_ACT_ALLOW" => ScmpAction::Allow,
            _ => ScmpAction::Errno(s["errnoRet"].as_i64().unwrap_or(1) as i32),
        };
        for n in s["names"].as_array().unwrap() {
            let Ok(sc) = ScmpSyscall::from_name(n.as_str().unwrap()) else { continue };
            match s["args"].as_array() {
                Some(args) => {
                    for a in args {
                        let op = match a["op"].as_str().unwrap() {
                            "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
                            "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
                            "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(a["value"].as_u64().unwrap()),
                            _ => ScmpCompareOp::Equal,
                        };
                        let c = ScmpArgCompare::new(a["index"].as_u64().unwrap() as u32, op, a["valueTwo"].as_u64().unwrap_or(a["value"].as_u64().unwrap()));
                        let _ = ctx.add_rule_conditional(action, sc, &[c]);
                    }
                }
                None => {
                    let _ = ctx.add_rule(action, sc);
                }
            }
        }
    }
    ctx
}

fn main() {
    let caps: Vec<String> = berth_runtime::spec::DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let profile = berth_runtime::spec::translate_seccomp(berth_runtime::spec::DOCKER_SECCOMP, &caps).unwrap();
    let null = std::fs::File::create("/dev/null").unwrap();
    for (name, arches) in [
        ("x86_64+x86+x32", vec![ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32]),
        ("x86_64+x86", vec![ScmpArch::X8664, ScmpArch::X86]),
        ("x86_64+x32", vec![ScmpArch::X8664, ScmpArch::X32]),
        ("x86_64", vec![ScmpArch::X8664]),
    ] {
        let mut times = vec![];
        for _ in 0..20 {
            let t = std::time::Instant::now();
            let ctx = build(&profile, &arches);
            ctx.export_bpf(&null).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("{name}: median {:.2} ms (min {:.2})", times[10], times[0]);
    }
}
