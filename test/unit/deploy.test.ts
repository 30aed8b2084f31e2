// The deployment files agree with the code: docker-compose.yml, deploy/docker/haproxy.cfg (generated),
// deploy/k8s/*.yaml and the Dockerfile are read as data and checked against the config defaults, the config
// loader and the HAProxy generator, so a change of ports, keys or drain deadline that leaves them behind fails here.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Script } from "node:vm";
import { parse, parseAllDocuments } from "yaml";
import { haproxyConfig, type BalancedNode } from "../../src/cluster/haproxy.ts";
import { DEFAULTS, type Config } from "../../src/config/defaults.ts";
import { loadConfig } from "../../src/config/load.ts";
import { COMPOSE_NODES, composeHaproxyConfig } from "../../scripts/gen-deploy.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), "utf8");

type Obj = Record<string, unknown>;

function obj(value: unknown, where: string): Obj {
  assert.ok(typeof value === "object" && value !== null && !Array.isArray(value), `${where}: expected a mapping, got ${JSON.stringify(value)}`);
  return value as Obj;
}

function list(value: unknown, where: string): unknown[] {
  assert.ok(Array.isArray(value), `${where}: expected a list, got ${JSON.stringify(value)}`);
  return value;
}

function str(value: unknown, where: string): string {
  assert.equal(typeof value, "string", `${where}: expected a string, got ${JSON.stringify(value)}`);
  return value as string;
}

function num(value: unknown, where: string): number {
  assert.equal(typeof value, "number", `${where}: expected a number, got ${JSON.stringify(value)}`);
  return value as number;
}

/** A compose duration (`45s`, `1m30s`, `500ms`) in seconds. */
function seconds(text: string): number {
  const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001, us: 1e-6 };
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|us|h|m|s)/g)];
  assert.ok(parts.length > 0 && parts.map((p) => p[0]).join("") === text, `${JSON.stringify(text)} is no duration`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * (units[p[2] ?? ""] ?? 0), 0);
}

/** Stand-ins for the values compose and Kubernetes fill in (secrets, the pod name). */
const SECRET = "0123456789abcdef0123456789abcdef";
const POD_NAME = "baton-6d5f7c9b8-x2k4p";

/** A compose environment (mapping or KEY=VALUE list) with `${VAR:?message}` replaced by a stand-in secret. */
function composeEnv(service: Obj, where: string): Record<string, string> {
  const raw = service.environment;
  const pairs: [string, string][] = Array.isArray(raw)
    ? raw.map((item) => {
        const text = str(item, where);
        const at = text.indexOf("=");
        return [text.slice(0, at), text.slice(at + 1)];
      })
    : Object.entries(obj(raw, `${where}.environment`)).map(([k, v]) => [k, String(v)]);
  return Object.fromEntries(pairs.map(([k, v]) => [k, v.replace(/\$\{[A-Z0-9_]+:\?[^}]*\}/g, SECRET)]));
}

/** The config a node started with this environment would run with (throws like the node would). */
function nodeConfig(env: Record<string, string>): Config {
  return loadConfig({ env });
}

// ---------------------------------------------------------------------------------------------- compose

const compose = obj(parse(read("docker-compose.yml"), { merge: true }), "docker-compose.yml");
const services = obj(compose.services, "services");
const service = (name: string): Obj => obj(services[name], `services.${name}`);
const nodeNames = Object.keys(services).filter((name) => /^node-\d+$/.test(name)).sort();

/** Published ports of a service as [published, target] pairs (short "P:T" or long syntax). */
function publishedPorts(s: Obj, where: string): [number, number][] {
  return list(s.ports ?? [], `${where}.ports`).map((port) => {
    if (typeof port === "string") {
      const match = /^(?:[\d.]+:)?(\d+):(\d+)(?:\/tcp)?$/.exec(port);
      assert.ok(match, `${where}: port ${port} is not HOST:CONTAINER`);
      return [Number(match[1]), Number(match[2])];
    }
    const long = obj(port, `${where}.ports[]`);
    return [Number(long.published), num(long.target, `${where}.ports[].target`)];
  });
}

describe("deployment files", () => {
  describe("docker-compose.yml", () => {
    it("has redis, node-1 .. node-3 and haproxy", () => {
      for (const name of ["redis", "node-1", "node-2", "node-3", "haproxy"]) assert.ok(name in services, `no service ${name}`);
      assert.deepEqual(nodeNames, ["node-1", "node-2", "node-3"]);
      assert.equal(COMPOSE_NODES, nodeNames.length, "scripts/gen-deploy.ts COMPOSE_NODES differs from the compose nodes");
    });

    it("haproxy publishes exactly the default RTMP and HTTP ports and mounts the generated config", () => {
      const haproxy = service("haproxy");
      const ports = publishedPorts(haproxy, "haproxy").sort((a, b) => a[0] - b[0]);
      const wanted = [DEFAULTS.rtmp.port, DEFAULTS.http.port].sort((a, b) => a - b).map((p): [number, number] => [p, p]);
      assert.deepEqual(ports, wanted);
      const volumes = list(haproxy.volumes, "haproxy.volumes").map((v) => str(v, "haproxy.volumes[]"));
      assert.ok(volumes.includes("./deploy/docker/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"), `volumes: ${volumes.join(", ")}`);
      const depends = Object.keys(obj(haproxy.depends_on, "haproxy.depends_on"));
      assert.deepEqual(depends.sort(), nodeNames);
    });

    it("redis keeps an append-only file on a named volume and has a health check", () => {
      const redis = service("redis");
      assert.match(str(redis.image, "redis.image"), /^redis:/);
      const command = Array.isArray(redis.command) ? redis.command.map(String).join(" ") : str(redis.command, "redis.command");
      assert.match(command, /--appendonly yes/);
      assert.match(command, /--appendfsync everysec/);
      const volumes = list(redis.volumes, "redis.volumes").map((v) => str(v, "redis.volumes[]"));
      const data = volumes.find((v) => v.endsWith(":/data"));
      assert.ok(data, "no volume at /data");
      assert.ok(Object.keys(obj(compose.volumes, "volumes")).includes(data.split(":")[0] ?? ""), `${data} is not a named volume`);
      const test = list(obj(redis.healthcheck, "redis.healthcheck").test, "redis.healthcheck.test").join(" ");
      assert.match(test, /redis-cli ping/);
    });

    for (const name of ["node-1", "node-2", "node-3"]) {
      describe(name, () => {
        const node = (): Obj => service(name);
        const env = (): Record<string, string> => composeEnv(node(), name);

        it("its environment is a valid config with BATON_NODE_ID equal to the service name", () => {
          const config = nodeConfig(env());
          assert.equal(env().BATON_NODE_ID, name);
          assert.equal(config.node.id, name);
          assert.equal(config.node.bind, "0.0.0.0");
          // media in MinIO, the compose deployment's segment store, with the credentials MinIO is started with
          assert.equal(config.storage.backend, "s3");
          assert.equal(config.storage.s3Endpoint, "http://minio:9000");
          assert.ok(Object.hasOwn(services, "minio") && Object.hasOwn(services, "minio-bucket"), "MinIO and its bucket job are services");
          assert.equal(config.rtmp.port, DEFAULTS.rtmp.port);
          assert.equal(config.http.port, DEFAULTS.http.port);
          assert.equal(config.agent.port, DEFAULTS.agent.port);
        });

        it("requires the secrets from the environment (${VAR:?message})", () => {
          const raw = obj(node().environment, `${name}.environment`);
          for (const key of ["BATON_AUTH_PUBLISHSECRET", "BATON_SESSIONS_SECRET", "BATON_ADMIN_TOKEN"]) {
            assert.match(str(raw[key], `${name}.${key}`), new RegExp(`^\\$\\{${key}:\\?.+\\}$`));
          }
        });

        it("BATON_REDIS_URL points at the redis service", () => {
          const url = new URL(env().BATON_REDIS_URL ?? "");
          assert.equal(url.protocol, "redis:");
          assert.equal(url.hostname, "redis");
          assert.equal(Number(url.port || 6379), 6379);
          const depends = obj(obj(node().depends_on, `${name}.depends_on`).redis, `${name}.depends_on.redis`);
          assert.equal(depends.condition, "service_healthy");
        });

        it("is health-checked on /readyz at the HTTP port and publishes no ports", () => {
          const test = list(obj(node().healthcheck, `${name}.healthcheck`).test, `${name}.healthcheck.test`).map(String).join(" ");
          assert.ok(test.includes(`http://127.0.0.1:${nodeConfig(env()).http.port}/readyz`), test);
          assert.ok(test.includes(`:${DEFAULTS.http.port}/readyz`));
          assert.equal(node().ports, undefined);
        });

        it("stop_grace_period is longer than its drain deadline (BATON_DRAIN_DEADLINE)", () => {
          const deadline = Number(env().BATON_DRAIN_DEADLINE);
          assert.ok(deadline > 0, "BATON_DRAIN_DEADLINE is not set");
          assert.equal(nodeConfig(env()).drain.deadline, deadline);
          const grace = seconds(str(node().stop_grace_period, `${name}.stop_grace_period`));
          assert.ok(grace > deadline, `stop_grace_period ${grace}s <= drain deadline ${deadline}s`);
        });
      });
    }
  });

  // ------------------------------------------------------------------------------------------- haproxy

  describe("deploy/docker/haproxy.cfg", () => {
    /** The compose nodes as HAProxy reaches them: by service name, on the ports their config gives. */
    const balanced = (host?: string): BalancedNode[] =>
      nodeNames.map((name) => {
        const config = nodeConfig(composeEnv(service(name), name));
        return { id: config.node.id, host: host ?? name, rtmpPort: config.rtmp.port, httpPort: config.http.port, agentPort: config.agent.port };
      });
    /** The nodes' rtmp.proxyProtocol, which must be one value: HAProxy sends the header to all of them or none. */
    const proxyProtocol = (): boolean => {
      const values = new Set(nodeNames.map((name) => nodeConfig(composeEnv(service(name), name)).rtmp.proxyProtocol));
      assert.equal(values.size, 1, "the compose nodes disagree on BATON_RTMP_PROXYPROTOCOL");
      return [...values][0] === true;
    };
    const generated = (host?: string): string =>
      haproxyConfig({
        bind: "0.0.0.0", rtmpPort: DEFAULTS.rtmp.port, httpPort: DEFAULTS.http.port, nodes: balanced(host), statsSocket: null, proxyProtocol: proxyProtocol(),
      });

    it("is what haproxyConfig generates for the compose nodes", () => {
      assert.equal(read("deploy/docker/haproxy.cfg"), generated(), "stale: run node --import tsx scripts/gen-deploy.ts");
      assert.equal(composeHaproxyConfig(), generated());
    });

    it("sends the PROXY protocol to the nodes' RTMP ports, which expect it and trust HAProxy's address", () => {
      assert.ok(proxyProtocol(), "BATON_RTMP_PROXYPROTOCOL is not true on the compose nodes");
      const rtmpServers = read("deploy/docker/haproxy.cfg").split("\n").filter((l) => /^\s+server node-\d+ node-\d+:1935 /.test(l));
      assert.equal(rtmpServers.length, nodeNames.length);
      for (const line of rtmpServers) assert.match(line, / send-proxy-v2$/);
      for (const line of read("deploy/docker/haproxy.cfg").split("\n").filter((l) => /:8080 /.test(l))) assert.doesNotMatch(line, /send-proxy/);
      for (const name of nodeNames) assert.deepEqual(nodeConfig(composeEnv(service(name), name)).http.trustedProxies, ["*"]);
    });

    it("scripts/gen-deploy.ts --check agrees", () => {
      const result = spawnSync(process.execPath, ["--import", "tsx", "scripts/gen-deploy.ts", "--check"], { cwd: ROOT, encoding: "utf8" });
      assert.equal(result.status, 0, result.stderr);
    });

    it("is valid for haproxy -c (with the nodes at 127.0.0.1, as names resolve only inside Docker)", function () {
      const version = spawnSync("haproxy", ["-v"], { encoding: "utf8" });
      if (version.error) this.skip();
      const dir = mkdtempSync(join(tmpdir(), "baton-deploy-test-"));
      try {
        const file = join(dir, "haproxy.cfg");
        writeFileSync(file, generated("127.0.0.1"));
        const result = spawnSync("haproxy", ["-c", "-f", file], { encoding: "utf8" });
        assert.equal(result.status, 0, `${result.stdout}${result.stderr}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  // ------------------------------------------------------------------------------------------ kubernetes

  describe("deploy/k8s", () => {
    const objects: Obj[] = readdirSync(join(ROOT, "deploy/k8s"))
      .filter((file) => file.endsWith(".yaml"))
      .flatMap((file) =>
        parseAllDocuments(read(`deploy/k8s/${file}`)).map((doc) => {
          assert.deepEqual(doc.errors, [], `deploy/k8s/${file}: ${doc.errors.join("; ")}`);
          return obj(doc.toJS(), file);
        }),
      );
    const find = (kind: string, name?: string): Obj[] =>
      objects.filter((o) => o.kind === kind && (name === undefined || obj(o.metadata, kind).name === name));
    const one = (kind: string, name?: string): Obj => {
      const found = find(kind, name);
      assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
      return found[0] as Obj;
    };

    const deployment = (): Obj => one("Deployment");
    const podSpec = (): Obj => obj(obj(obj(deployment().spec, "spec").template, "template").spec, "template.spec");
    const container = (): Obj => obj(list(podSpec().containers, "containers")[0], "containers[0]");
    const matchLabels = (o: Obj, where: string): Obj => obj(obj(obj(o.spec, where).selector, `${where}.selector`).matchLabels, `${where}.matchLabels`);
    const podLabels = (o: Obj, where: string): Obj => obj(obj(obj(obj(o.spec, where).template, where).metadata, where).labels, `${where} pod labels`);
    const isSubset = (small: Obj, big: Obj): boolean => Object.entries(small).every(([k, v]) => big[k] === v);

    /** The container's environment as the node sees it, with valueFrom filled in by stand-ins. */
    const env = (): Record<string, string> =>
      Object.fromEntries(
        list(container().env, "env").map((item) => {
          const e = obj(item, "env[]");
          const name = str(e.name, "env[].name");
          if (e.value !== undefined) return [name, str(e.value, name)];
          const from = obj(e.valueFrom, `${name}.valueFrom`);
          if (from.fieldRef !== undefined) {
            assert.equal(obj(from.fieldRef, name).fieldPath, "metadata.name", `${name}: only the pod name is filled in here`);
            return [name, POD_NAME];
          }
          const secret = obj(from.secretKeyRef, `${name}.valueFrom.secretKeyRef`);
          assert.equal(secret.name, "baton-secrets", `${name} comes from another Secret`);
          return [name, SECRET];
        }),
      );
    const portNumber = (port: unknown): number => {
      if (typeof port === "number") return port;
      const named = list(container().ports, "ports").map((p) => obj(p, "ports[]")).find((p) => p.name === port);
      assert.ok(named, `no container port named ${String(port)}`);
      return num(named.containerPort, `port ${String(port)}`);
    };

    it("the Deployment rolls out one new node at a time and never below its replicas", () => {
      const strategy = obj(obj(deployment().spec, "spec").strategy, "strategy");
      assert.equal(strategy.type, "RollingUpdate");
      const rolling = obj(strategy.rollingUpdate, "rollingUpdate");
      assert.equal(rolling.maxSurge, 1);
      assert.equal(rolling.maxUnavailable, 0);
      assert.ok(isSubset(matchLabels(deployment(), "Deployment"), podLabels(deployment(), "Deployment")));
    });

    it("its environment is a valid config: node id from the pod name, secrets from baton-secrets", () => {
      const config = nodeConfig(env());
      assert.equal(config.node.id, POD_NAME);
      const nodeId = list(container().env, "env").map((e) => obj(e, "env[]")).find((e) => e.name === "BATON_NODE_ID");
      assert.equal(obj(obj(nodeId?.valueFrom, "BATON_NODE_ID.valueFrom").fieldRef, "fieldRef").fieldPath, "metadata.name");
      for (const key of ["BATON_AUTH_PUBLISHSECRET", "BATON_SESSIONS_SECRET", "BATON_ADMIN_TOKEN"]) assert.equal(env()[key], SECRET, `${key} is not from the Secret`);
      const redis = new URL(config.redis.url);
      const redisService = one("Service", redis.hostname);
      assert.ok(isSubset(obj(obj(redisService.spec, "redis Service").selector, "selector"), podLabels(one("StatefulSet"), "StatefulSet")), "the redis Service selects no redis pod");
    });

    it("declares the RTMP, HTTP and agent ports", () => {
      const ports = list(container().ports, "ports").map((p) => num(obj(p, "ports[]").containerPort, "containerPort")).sort((a, b) => a - b);
      assert.deepEqual(ports, [DEFAULTS.rtmp.port, DEFAULTS.http.port, DEFAULTS.agent.port].sort((a, b) => a - b));
    });

    it("readiness is /readyz and liveness /healthz, on the HTTP port", () => {
      const readiness = obj(obj(container().readinessProbe, "readinessProbe").httpGet, "readinessProbe.httpGet");
      assert.equal(readiness.path, "/readyz");
      assert.equal(portNumber(readiness.port), DEFAULTS.http.port);
      const liveness = obj(obj(container().livenessProbe, "livenessProbe").httpGet, "livenessProbe.httpGet");
      assert.equal(liveness.path, "/healthz");
      assert.equal(portNumber(liveness.port), DEFAULTS.http.port);
    });

    it("preStop drains through the admin API with node -e (the image has no curl)", () => {
      const command = list(obj(obj(obj(container().lifecycle, "lifecycle").preStop, "preStop").exec, "preStop.exec").command, "command").map((c) => str(c, "command[]"));
      assert.deepEqual(command.slice(0, 2), ["node", "-e"]);
      const script = command[2] ?? "";
      new Script(script, { filename: "preStop" }); // compiles
      assert.ok(script.includes(`http://127.0.0.1:${DEFAULTS.http.port}`));
      for (const part of ["/admin/drain", "POST", "Bearer", "BATON_ADMIN_TOKEN", "/admin/status", '"drained"']) assert.ok(script.includes(part), `preStop lacks ${part}`);
    });

    it("terminationGracePeriodSeconds is greater than the drain deadline", () => {
      const deadline = Number(env().BATON_DRAIN_DEADLINE);
      assert.ok(deadline > 0, "BATON_DRAIN_DEADLINE is not set");
      assert.equal(nodeConfig(env()).drain.deadline, deadline);
      assert.ok(num(podSpec().terminationGracePeriodSeconds, "terminationGracePeriodSeconds") > deadline);
    });

    it("a Service balances HTTP and RTMP over the baton pods", () => {
      const pods = podLabels(deployment(), "Deployment");
      const balancing = find("Service").filter((s) => isSubset(obj(obj(s.spec, "Service").selector, "selector"), pods));
      assert.equal(balancing.length, 1);
      const ports = list(obj((balancing[0] as Obj).spec, "Service").ports, "ports").map((p) => obj(p, "ports[]"));
      assert.deepEqual(ports.map((p) => num(p.port, "port")).sort((a, b) => a - b), [DEFAULTS.rtmp.port, DEFAULTS.http.port].sort((a, b) => a - b));
      for (const p of ports) assert.equal(portNumber(p.targetPort), p.port);
    });

    it("a PodDisruptionBudget selects the same pods", () => {
      const pdb = one("PodDisruptionBudget");
      assert.deepEqual(matchLabels(pdb, "PodDisruptionBudget"), matchLabels(deployment(), "Deployment"));
      const spec = obj(pdb.spec, "PodDisruptionBudget");
      assert.ok(spec.maxUnavailable === 1 || (typeof spec.minAvailable === "number" && spec.minAvailable >= 2), "neither maxUnavailable: 1 nor minAvailable >= 2");
    });

    it("Redis is one replica with an append-only file on a persistent volume", () => {
      const redis = one("StatefulSet");
      const spec = obj(redis.spec, "StatefulSet");
      assert.equal(spec.replicas, 1);
      const main = obj(list(obj(obj(spec.template, "template").spec, "template.spec").containers, "containers")[0], "redis container");
      assert.match(list(main.args ?? main.command, "redis args").join(" "), /--appendonly yes/);
      assert.equal(list(spec.volumeClaimTemplates, "volumeClaimTemplates").length, 1);
    });
  });

  // ------------------------------------------------------------------------------------------- README

  describe("README.md, Deploying", () => {
    const readme = read("README.md");
    const section = readme.slice(readme.indexOf("## Deploying"), readme.indexOf("## Design and code"));

    it("comes just before Design and code", () => {
      assert.ok(readme.indexOf("## Deploying") > 0 && section.length > 0, "no ## Deploying before ## Design and code");
      assert.deepEqual(section.match(/^## .*/gm), ["## Deploying"], "another section between Deploying and Design and code");
    });

    it("exports exactly the variables docker-compose.yml requires", () => {
      const required = new Set([...read("docker-compose.yml").matchAll(/\$\{([A-Z0-9_]+):\?/g)].map((m) => m[1]));
      const exported = new Set([...section.matchAll(/^ {4}export ([A-Z0-9_]+)=/gm)].map((m) => m[1]));
      assert.deepEqual([...exported].sort(), [...required].sort());
    });

    it("creates the Secret with exactly the keys baton.yaml reads", () => {
      const keys = [...read("deploy/k8s/baton.yaml").matchAll(/secretKeyRef:\s+name: baton-secrets\s+key: (\S+)/g)].map((m) => m[1]).sort();
      const created = [...section.matchAll(/--from-literal=([a-z-]+)=/g)].map((m) => m[1]).sort();
      assert.ok(section.includes("kubectl create secret generic baton-secrets"));
      assert.equal(keys.length, 3);
      assert.deepEqual(created, keys);
    });
  });
});
