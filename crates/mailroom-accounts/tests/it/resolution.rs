//! Resolution: (feature, current user or binding) -> account and rule.

use mailroom_accounts::{Account, Error, ResolutionRule};
use mailroom_crypto::KeyRing;
use mailroom_model::{AccountPolicy, AccountRef, Binding, Feature, FeatureCatalog};
use mailroom_testkit::{TestDatabase, on_both_backends};

use crate::{accounts, google, microsoft};

on_both_backends!(
    users_get_their_bound_account_and_others_the_company_account,
    a_company_only_feature_ignores_user_accounts,
    without_any_account_the_error_names_both_ways_to_configure_one,
    other_bindings_resolve_the_same_way,
);

async fn users_get_their_bound_account_and_others_the_company_account(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let catalog = FeatureCatalog::with_defaults();
    let sales = catalog.get("sales-document").unwrap();
    repo.set_company(&google("orders@example.com"), None)
        .await
        .unwrap();
    let sa = repo
        .add_user_account(
            &microsoft("sa@contoso.example"),
            Some(Binding::system_user("sa").unwrap()),
        )
        .await
        .unwrap()
        .account;

    #[track_caller]
    fn check(resolution: &mailroom_accounts::Resolution, account: AccountRef, rule: &str) {
        assert_eq!(resolution.account_ref(), account);
        assert_eq!(resolution.rule.to_string(), rule);
    }

    for user in ["sa", "SA", "  Sa  "] {
        let resolution = repo.resolve(sales, Some(user)).await.unwrap();
        check(
            &resolution,
            AccountRef::User(sa.id),
            "the user account bound to SystemUser:User_Name:sa",
        );
        assert!(
            matches!(&resolution.account, Account::User(user) if user.server.smtp_user == "sa@contoso.example")
        );
    }
    check(
        &repo.resolve(sales, Some("bob")).await.unwrap(),
        AccountRef::Company,
        "the company account, because no user account is bound to SystemUser:User_Name:bob",
    );
    check(
        &repo.resolve(sales, None).await.unwrap(),
        AccountRef::Company,
        "the company account, because no current user was given",
    );
    check(
        &repo.resolve(sales, Some("   ")).await.unwrap(),
        AccountRef::Company,
        "the company account, because no current user was given",
    );
}

async fn a_company_only_feature_ignores_user_accounts(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let mut catalog = FeatureCatalog::with_defaults();
    catalog
        .register(
            Feature::new(
                "statements",
                "Customer statements",
                AccountPolicy::CompanyOnly,
            )
            .unwrap(),
        )
        .unwrap();
    repo.set_company(&google("orders@example.com"), None)
        .await
        .unwrap();
    repo.add_user_account(
        &microsoft("sa@contoso.example"),
        Some(Binding::system_user("sa").unwrap()),
    )
    .await
    .unwrap();
    for feature in ["automation-agent", "statements"] {
        let resolution = repo
            .resolve(catalog.get(feature).unwrap(), Some("sa"))
            .await
            .unwrap();
        assert_eq!(resolution.account_ref(), AccountRef::Company);
        assert_eq!(
            resolution.rule,
            ResolutionRule::CompanyOnlyFeature {
                feature: feature.to_owned()
            }
        );
    }
}

async fn without_any_account_the_error_names_both_ways_to_configure_one(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let catalog = FeatureCatalog::with_defaults();
    let error = repo
        .resolve(catalog.get("sales-document").unwrap(), Some("sa"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NoAccount { .. }));
    let text = error.to_string();
    assert!(text.contains("configure the company account"), "{text}");
    assert!(
        text.contains("add a user account bound to SystemUser:User_Name:sa"),
        "{text}"
    );
    assert_eq!(
        error.remedy(),
        Some(mailroom_model::Remedy::ConfigureCompany)
    );
    let error = repo
        .resolve(catalog.get("automation-agent").unwrap(), Some("sa"))
        .await
        .unwrap_err();
    assert!(
        !error.to_string().contains("--bind"),
        "a company-only feature cannot use a user account"
    );
}

async fn other_bindings_resolve_the_same_way(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let catalog = FeatureCatalog::with_defaults();
    let sales = catalog.get("sales-document").unwrap();
    repo.set_company(&google("orders@example.com"), None)
        .await
        .unwrap();
    let east = repo
        .add_user_account(
            &microsoft("east@contoso.example"),
            Some(Binding::new("Customer", "Territory", "EAST").unwrap()),
        )
        .await
        .unwrap()
        .account;
    let resolution = repo
        .resolve_binding(
            sales,
            Some(&Binding::new("customer", "territory", "east").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(resolution.account_ref(), AccountRef::User(east.id));
    let west = repo
        .resolve_binding(
            sales,
            Some(&Binding::new("Customer", "Territory", "WEST").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(west.account_ref(), AccountRef::Company);
    // A system user named EAST is not the territory EAST.
    let user = repo.resolve(sales, Some("EAST")).await.unwrap();
    assert_eq!(user.account_ref(), AccountRef::Company);
}
