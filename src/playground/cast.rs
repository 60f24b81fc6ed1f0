//! The people of the playground's workspace and their user groups. Their IDs
//! are the placeholders of the shipped `billing-admin` runbook
//! (`U0BILLOWNER`, `S0FINANCE`, `S0FINLEADS`, `U0CFO`), so that runbook
//! works here unchanged.

use crate::slack_standin::FakeSlack;

/// One person to play.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Person {
    pub id: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    /// Who they are, in the person picker.
    pub role: &'static str,
}

/// Everyone, the requester first (the page starts as them).
pub const PEOPLE: &[Person] = &[
    Person {
        id: "U0FIONA",
        name: "Fiona Reyes",
        email: "fiona@playground.example",
        role: "requester, finance",
    },
    Person {
        id: "U0MARCUS",
        name: "Marcus Lee",
        email: "marcus@playground.example",
        role: "Fiona's manager",
    },
    Person {
        id: "U0BILLOWNER",
        name: "Olivia Park",
        email: "olivia@playground.example",
        role: "system owner (billing, payroll)",
    },
    Person {
        id: "U0GRACE",
        name: "Grace Kim",
        email: "grace@playground.example",
        role: "approver, finance leads group",
    },
    Person {
        id: "U0SAM",
        name: "Sam Ortiz",
        email: "sam@playground.example",
        role: "security reviewer",
    },
    Person {
        id: "U0CFO",
        name: "Chris Novak",
        email: "chris@playground.example",
        role: "CFO, escalations",
    },
];

/// User groups and their members.
pub const GROUPS: &[(&str, &str, &[&str])] = &[
    ("S0FINANCE", "finance", &["U0FIONA"]),
    ("S0SUPLEADS", "support-leads", &["U0MARCUS"]),
    ("S0FINLEADS", "finance-leads", &["U0GRACE"]),
    ("S0SECURITY", "security", &["U0SAM"]),
];

/// Person to manager, for approver kind `manager` (the config's `[directory]`).
pub const MANAGERS: &[(&str, &str)] = &[("U0FIONA", "U0MARCUS"), ("U0GRACE", "U0CFO")];

/// Makes the people and groups exist in the stand-in.
pub fn seed(slack: &FakeSlack) {
    for person in PEOPLE {
        slack.add_user(person.id, person.name, person.email);
    }
    for (id, _, members) in GROUPS {
        slack.set_usergroup(id, members);
    }
}

/// The person with this ID.
pub fn person(id: &str) -> Option<&'static Person> {
    PEOPLE.iter().find(|person| person.id == id)
}
