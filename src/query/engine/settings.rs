//! `SET quiver.<setting> = <value>` and `SHOW quiver.<setting>`: parsed
//! into [`Statement::SetOption`] / [`Statement::ShowOption`], checked here
//! (an unknown name or a bad value is refused naming it) and applied by
//! whoever holds the session (the Flight service); every other `SET`
//! stays refused as before. The settings a query runs with travel in
//! [`Query::settings`](crate::query::engine::Query) and are applied to its
//! physical plan ([`crate::query::topk::apply_settings`]).

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Set, Statement as SqlStatement, Value};

use crate::error::{Error, Result};
use crate::query::engine::Statement;
use crate::query::topk::SearchSettings;

/// Quiver's statement for `SET quiver.*` / `SHOW quiver.*`, if `stmt` is one.
pub(crate) fn setting_statement(stmt: &DFStatement) -> Result<Option<Statement>> {
    let DFStatement::Statement(s) = stmt else {
        return Ok(None);
    };
    match s.as_ref() {
        SqlStatement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let name = variable.to_string();
            if !name.to_ascii_lowercase().starts_with("quiver.") {
                return Ok(None);
            }
            let [value] = &values[..] else {
                return Err(Error::invalid(format!("SET {name} takes one value")));
            };
            let value = match value {
                SqlExpr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                    Value::Number(n, _) => n.to_string(),
                    other => other.to_string(),
                },
                SqlExpr::Identifier(id) => id.value.clone(),
                other => other.to_string(),
            };
            // Checked now, against a scratch copy: the session applies it.
            SearchSettings::default()
                .set(&name, &value)
                .map_err(|e| Error::invalid(e.to_string()))?;
            Ok(Some(Statement::SetOption {
                name: name.to_ascii_lowercase(),
                value,
            }))
        }
        SqlStatement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join(".");
            if !name.to_ascii_lowercase().starts_with("quiver.") {
                return Ok(None);
            }
            if SearchSettings::default().get(&name).is_none() {
                return Err(Error::invalid(format!(
                    "unknown setting '{name}': the settings are {}",
                    crate::query::topk::SETTINGS.join(", ")
                )));
            }
            Ok(Some(Statement::ShowOption {
                name: name.to_ascii_lowercase(),
            }))
        }
        _ => Ok(None),
    }
}

/// `SELECT '<value>' AS "<name>"`: the answer of `SHOW <name>`.
pub fn show_sql(name: &str, value: &str) -> String {
    format!(
        "SELECT '{}' AS \"{}\"",
        value.replace('\'', "''"),
        name.replace('"', "")
    )
}
