//! Where the CLI points: a deployed stack (its Outputs read from CloudFormation, with the standard
//! AWS credential chain: environment, profiles, SSO) or the local stack (`.local/outputs.json`
//! and its emulator endpoint, written by `make up`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_config::BehaviorVersion;

pub struct Target {
    pub outputs: HashMap<String, String>,
    pub config: aws_config::SdkConfig,
    /// The local stack: webhooks may go to private addresses, as the local functions allow.
    pub local: bool,
    /// The local stack's function logs (`.local/logs` beside the outputs file).
    pub local_logs: PathBuf,
}

impl Target {
    pub fn output(&self, name: &str) -> Result<&str, String> {
        self.outputs
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("the stack has no output {name}"))
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    pub fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(&self.config)
    }
}

/// `.local/outputs.json` in this directory or the nearest parent that has one.
fn find_local_outputs() -> Option<PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join(".local/outputs.json");
        if candidate.exists() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

fn read_outputs(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let map = value
        .as_object()
        .ok_or_else(|| format!("{} is not a JSON object", path.display()))?;
    Ok(map
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect())
}

pub async fn resolve(stack: Option<&str>, outputs: Option<&Path>, region: Option<&str>) -> Result<Target, String> {
    if let Some(stack) = stack {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        let config = loader.load().await;
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let described = cfn
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| format!("describing stack {stack}: {}", aws_sdk_cloudformation::Error::from(e)))?;
        let outputs = described
            .stacks()
            .first()
            .ok_or_else(|| format!("no stack named {stack}"))?
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
            .collect();
        return Ok(Target {
            outputs,
            config,
            local: false,
            local_logs: PathBuf::new(),
        });
    }
    let path = match outputs {
        Some(p) => p.to_path_buf(),
        None => find_local_outputs().ok_or(
            "no --stack given and no .local/outputs.json found (start the local stack with `make up`, \
             or pass --stack NAME)",
        )?,
    };
    let outputs = read_outputs(&path)?;
    let endpoint = outputs
        .get("EndpointUrl")
        .cloned()
        .ok_or_else(|| format!("{} has no EndpointUrl", path.display()))?;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.unwrap_or("us-east-1").to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "local-stack",
        ))
        .load()
        .await;
    let local_logs = path.parent().map(|p| p.join("logs")).unwrap_or_default();
    Ok(Target {
        outputs,
        config,
        local: true,
        local_logs,
    })
}
