//! deploy/kubernetes/: every document parses as YAML (yaml-rust2) and the fields the binary
//! and the image rely on agree with them: the config in the ConfigMap is valid for `[ha]`,
//! listens where the probes and the Service connect, and names files the pod mounts; the
//! pods run unprivileged on a read-only root with probes on /healthz and /readyz.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipdrift::config::{self, SecretRef};
use yaml_rust2::{Yaml, YamlLoader};

/// BENCHMARKS.md: peak RSS idling over 10 000 instances.
const MEASURED_PEAK_RSS_MIB: f64 = 43.2;
/// The image's `USER` and `EXPOSE` (deploy/Dockerfile).
const IMAGE_UID: i64 = 65532;
const METRICS_PORT: i64 = 9808;
/// The image's `CMD` reads this config.
const CONFIG_PATH: &str = "/etc/ipdrift/ipdrift.toml";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every document of every file: file name → documents.
fn manifests() -> BTreeMap<String, Vec<Yaml>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".yaml"),
            "{name}: only .yaml files belong here"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let docs =
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: not YAML: {e}"));
        assert!(!docs.is_empty(), "{name} has no document");
        files.insert(name, docs);
    }
    files
}

/// The one object of `kind`.
fn object(kind: &str) -> Yaml {
    let found: Vec<Yaml> = manifests()
        .into_values()
        .flatten()
        .filter(|doc| doc["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} expected");
    found.into_iter().next().unwrap()
}

fn text(value: &Yaml) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn list(value: &Yaml) -> &[Yaml] {
    value
        .as_vec()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
}

/// The item of `items` whose `name` is `name`.
fn named<'a>(items: &'a Yaml, name: &str) -> &'a Yaml {
    list(items)
        .iter()
        .find(|i| i["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {name:?} in {items:?}"))
}

/// A memory quantity (`64Mi`, `1Gi`) in MiB.
fn mebibytes(quantity: &Yaml) -> f64 {
    let q = text(quantity);
    let (number, factor) = if let Some(n) = q.strip_suffix("Mi") {
        (n, 1.0)
    } else if let Some(n) = q.strip_suffix("Gi") {
        (n, 1024.0)
    } else {
        panic!("write memory in Mi or Gi: {q}")
    };
    number.parse::<f64>().unwrap() * factor
}

fn deployment_container() -> Yaml {
    let deployment = object("Deployment");
    let containers = list(&deployment["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1);
    containers[0].clone()
}

#[test]
fn every_document_is_a_named_object_and_kustomize_lists_every_file() {
    let files = manifests();
    let mut listed: Vec<String> = Vec::new();
    for (file, docs) in &files {
        for doc in docs {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].as_str().is_some(), "{file}: no {field}");
            }
            if doc["kind"].as_str() == Some("Kustomization") {
                listed = list(&doc["resources"])
                    .iter()
                    .map(|r| text(r).to_string())
                    .collect();
            } else {
                assert!(
                    doc["metadata"]["name"].as_str().is_some(),
                    "{file}: no metadata.name"
                );
            }
        }
    }
    let mut expected: Vec<String> = files
        .keys()
        .filter(|f| *f != "kustomization.yaml")
        .cloned()
        .collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "kustomization.yaml resources");
}

#[test]
fn two_replicas_run_unprivileged_on_a_read_only_root() {
    let deployment = object("Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(2));
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], labels);

    let pod = &spec["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    let account = text(&pod["serviceAccountName"]);
    assert_eq!(text(&object("ServiceAccount")["metadata"]["name"]), account);
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["runAsUser"].as_i64(), Some(IMAGE_UID));
    assert_eq!(security["runAsGroup"].as_i64(), Some(IMAGE_UID));
    assert_eq!(
        security["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );

    let container = deployment_container();
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["privileged"].as_bool(), Some(false));
    assert!(
        list(&security["capabilities"]["drop"])
            .iter()
            .any(|c| c.as_str() == Some("ALL"))
    );
    // The image's ENTRYPOINT and CMD run the controller on CONFIG_PATH.
    assert!(container["command"].is_badvalue() && container["args"].is_badvalue());

    let restricted = object("Namespace");
    assert_eq!(
        restricted["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("restricted")
    );
}

#[test]
fn probes_ask_healthz_and_readyz_on_the_metrics_port() {
    let container = deployment_container();
    let port = named(&container["ports"], "metrics");
    assert_eq!(port["containerPort"].as_i64(), Some(METRICS_PORT));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some("metrics"), "{probe}");
    }
}

#[test]
fn resources_are_sized_from_the_measured_rss() {
    let resources = &deployment_container()["resources"];
    let request = mebibytes(&resources["requests"]["memory"]);
    let limit = mebibytes(&resources["limits"]["memory"]);
    assert!(
        request >= MEASURED_PEAK_RSS_MIB * 1.25,
        "a {request} MiB request leaves too little above the measured {MEASURED_PEAK_RSS_MIB} MiB"
    );
    assert!(
        limit >= request * 1.5,
        "limit {limit} MiB, request {request} MiB"
    );
    assert!(resources["requests"]["cpu"].as_str().is_some());
}

#[test]
fn the_config_map_holds_a_valid_ha_config_for_the_files_the_pod_mounts() {
    let config_map = object("ConfigMap");
    let container = deployment_container();
    let pod = object("Deployment")["spec"]["template"]["spec"].clone();

    // Mounted where the image's CMD looks.
    let mount = list(&container["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(CONFIG_PATH))
        .unwrap_or_else(|| panic!("nothing mounted at {CONFIG_PATH}"));
    let volume = named(&pod["volumes"], text(&mount["name"]));
    assert_eq!(
        volume["configMap"]["name"].as_str(),
        config_map["metadata"]["name"].as_str()
    );
    let key = text(&mount["subPath"]);
    let toml = text(&config_map["data"][key]);

    let config = config::parse(toml, Path::new(CONFIG_PATH))
        .unwrap_or_else(|e| panic!("the ConfigMap's {key} is invalid:\n{e}"));
    assert_eq!(
        config.controller.listen,
        format!("0.0.0.0:{METRICS_PORT}").parse().unwrap(),
        "probes and Prometheus connect from outside the pod"
    );
    let ha = config.ha.as_ref().expect("the ConfigMap configures [ha]");
    assert!(ha.endpoints.iter().all(|e| e.starts_with("http")));
    assert!(ha.lease_ttl >= config::MIN_LEASE_TTL);

    // Every file the config reads is a key of a mounted Secret.
    let files: Vec<PathBuf> = config
        .secrets()
        .into_iter()
        .filter_map(|at| match at.secret {
            SecretRef::File(path) => Some(path),
            SecretRef::Env(_) => None,
        })
        .collect();
    assert!(!files.is_empty());
    let secret = object("Secret");
    for file in &files {
        let mount = list(&container["volumeMounts"])
            .iter()
            .find(|m| file.parent() == Some(Path::new(text(&m["mountPath"]))))
            .unwrap_or_else(|| panic!("{} is in no mounted volume", file.display()));
        let volume = named(&pod["volumes"], text(&mount["name"]));
        assert_eq!(
            volume["secret"]["secretName"].as_str(),
            secret["metadata"]["name"].as_str()
        );
        let key = file.file_name().unwrap().to_str().unwrap();
        assert!(
            secret["stringData"][key].as_str().is_some(),
            "the Secret has no {key}"
        );
        // Readable by the pod's group (fsGroup), by nobody else.
        assert_eq!(volume["secret"]["defaultMode"].as_i64(), Some(0o440));
    }
    assert_eq!(pod["securityContext"]["fsGroup"].as_i64(), Some(IMAGE_UID));

    // The root is read-only: the audit log needs a writable volume.
    let audit_log = config.controller.audit_log.as_ref().unwrap();
    let mount = list(&container["volumeMounts"])
        .iter()
        .find(|m| audit_log.parent() == Some(Path::new(text(&m["mountPath"]))))
        .expect("the audit log's directory is mounted");
    assert!(mount["readOnly"].as_bool() != Some(true));
    assert!(!named(&pod["volumes"], text(&mount["name"]))["emptyDir"].is_badvalue());
}

#[test]
fn the_service_and_service_monitor_scrape_every_pod() {
    let pod_labels = object("Deployment")["spec"]["template"]["metadata"]["labels"].clone();
    let service = object("Service");
    assert_eq!(service["spec"]["selector"], pod_labels);
    let port = named(&service["spec"]["ports"], "metrics");
    assert_eq!(port["port"].as_i64(), Some(METRICS_PORT));
    assert_eq!(port["targetPort"].as_str(), Some("metrics"));

    let monitor = object("ServiceMonitor");
    assert_eq!(
        monitor["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    let wanted = monitor["spec"]["selector"]["matchLabels"]
        .as_hash()
        .unwrap();
    let labels = service["metadata"]["labels"].as_hash().unwrap();
    for (key, value) in wanted {
        assert_eq!(labels.get(key), Some(value), "the Service lacks {key:?}");
    }
    let endpoint = &list(&monitor["spec"]["endpoints"])[0];
    assert_eq!(endpoint["port"].as_str(), Some("metrics"));
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));

    let budget = object("PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"].as_i64(), Some(1));
    assert_eq!(budget["spec"]["selector"]["matchLabels"], pod_labels);
}
