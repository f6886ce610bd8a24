//! `[[app]]`: the apps the device must have when no IDF comes from elsewhere. Each table is
//! checked as an IDF entry is; an error names the table it is in.

use super::error::{ConfigError, Key, Section, invalid};
use super::inputs::AppInput;
use crate::idf::{Idf, IdfError, WantedApp};

pub(super) fn validate(inputs: &[AppInput]) -> Result<Vec<WantedApp>, ConfigError> {
    let apps: Vec<WantedApp> = inputs
        .iter()
        .map(|a| WantedApp {
            name: a.name.value.clone(),
            version: a.version.value.clone(),
            app_json_sha256: a.app_json_sha256.as_ref().map(|s| s.value.clone()),
        })
        .collect();
    let idf = Idf { apps };
    if let Err(IdfError::Field {
        index,
        field,
        reason,
    }) = idf.validate()
    {
        // The IDF's apps are the tables, one for one, in their order.
        let origin = &inputs[index].origin;
        return Err(invalid(origin, Key::at(Section::App, index, field), reason));
    }
    Ok(idf.apps)
}
