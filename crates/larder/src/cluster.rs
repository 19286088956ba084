//! `larder cluster status`: the cluster as one node sees it (its admin `/cluster`), as a table.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

/// Arguments of `larder cluster status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Admin HTTP address of the node to ask.
    #[arg(long, default_value = "127.0.0.1:7071", value_name = "HOST:PORT")]
    pub(crate) node: String,
    /// The nodes' bearer token (default: `token` of [cache] in the configuration).
    #[arg(long, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct View {
    enabled: bool,
    #[serde(rename = "self", default)]
    me: String,
    #[serde(default)]
    epoch: u64,
    #[serde(default)]
    members: Vec<Member>,
    #[serde(default)]
    partitions_moving: usize,
}

#[derive(Debug, Deserialize)]
struct Member {
    id: String,
    generation: u64,
    status: String,
    resp: String,
    grpc: String,
    admin: String,
    partitions: usize,
}

/// Prints the table; fails when the node cannot be asked or is not clustered.
pub(crate) fn status(args: &StatusArgs, configured_token: &str) -> anyhow::Result<ExitCode> {
    let url = format!("http://{}/cluster", args.node);
    let token = args.token.as_deref().unwrap_or(configured_token);
    let authorization = (!token.is_empty()).then(|| format!("Bearer {token}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let (code, body) = crate::probe::get(&url, authorization.as_deref(), deadline, true)
        .with_context(|| format!("asking {url}"))?;
    if code == 401 {
        bail!("{url} wants the nodes' token: --token, or token in [cache] (LARDER_CACHE_TOKEN)");
    }
    if code != 200 {
        bail!("{url} answered {code}");
    }
    let view: View = serde_json::from_str(&body).with_context(|| format!("reading {url}"))?;
    if !view.enabled {
        bail!("the node at {} is not clustered", args.node);
    }
    print!("{}", render(&view));
    Ok(ExitCode::SUCCESS)
}

fn render(view: &View) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "cluster epoch {} as seen by {}; {} members, {} partitions moving here\n",
        view.epoch,
        view.me,
        view.members.len(),
        view.partitions_moving
    );
    let header = [
        "ID",
        "STATUS",
        "PARTITIONS",
        "RESP",
        "GRPC",
        "ADMIN",
        "GENERATION",
    ];
    let rows: Vec<[String; 7]> = view
        .members
        .iter()
        .map(|m| {
            let me = if m.id == view.me { " *" } else { "" };
            [
                format!("{}{me}", m.id),
                m.status.clone(),
                m.partitions.to_string(),
                m.resp.clone(),
                m.grpc.clone(),
                m.admin.clone(),
                m.generation.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_and_marks_the_asking_node() {
        let view: View = serde_json::from_str(
            r#"{"enabled":true,"self":"a","epoch":7,"partitions_moving":0,"members":[
            {"id":"a","generation":1,"status":"ready","resp":"h:1","grpc":"h:2","admin":"h:3","partitions":512},
            {"id":"bb","generation":2,"status":"draining","resp":"h:4","grpc":"h:5","admin":"h:6","partitions":512}]}"#,
        )
        .unwrap();
        let text = render(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("cluster epoch 7 as seen by a; 2 members"));
        assert!(lines[1].starts_with("ID   STATUS    PARTITIONS"), "{text}");
        assert!(lines[2].starts_with("a *  ready     512"), "{text}");
        assert!(lines[3].starts_with("bb   draining  512"), "{text}");
    }
}
