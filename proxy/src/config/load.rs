//! Loading `weir.yaml`: TODO(owner: helper)
use super::Config;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

pub fn load_str(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        ConfigErrors(vec![ConfigError { file: file.into(), line, column, message: e.to_string() }])
    })
}

pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError { file: file.clone(), line: 1, column: 1, message: e.to_string() }])
    })?;
    load_str(&file, &text)
}
