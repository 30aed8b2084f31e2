// The config: defaults, precedence (defaults, file, environment, overrides), BATON_CONFIG. Refused values:
// config-errors.test.ts.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { loadConfig } from "../../src/config/load.ts";
import { GOOD_RENDITION, configError, configFile, configFiles } from "../helpers/config.ts";

describe("config", () => {
  configFiles();

  describe("defaults", () => {
    it("config/default.json holds exactly the DEFAULTS table", () => {
      const shipped: unknown = JSON.parse(readFileSync(new URL("../../config/default.json", import.meta.url), "utf8"));
      assert.deepEqual(shipped, DEFAULTS);
    });

    it("an empty environment and no file give the defaults", () => {
      assert.deepEqual(loadConfig({ env: {} }), DEFAULTS);
    });

    it("loading config/default.json as the file gives the defaults", () => {
      const path = new URL("../../config/default.json", import.meta.url).pathname;
      assert.deepEqual(loadConfig({ env: {}, file: path }), DEFAULTS);
    });

    it("loading never changes the DEFAULTS table", () => {
      const before = structuredClone(DEFAULTS);
      const config = loadConfig({
        env: { BATON_HTTP_PORT: "9000" },
        file: configFile({ hls: { playlistWindow: 10 }, transcode: { ladder: [GOOD_RENDITION] } }),
        overrides: { rtmp: { port: 2000 } },
      });
      config.node.id = "changed";
      config.transcode.ladder.push({ ...GOOD_RENDITION, name: "b" });
      assert.deepEqual(DEFAULTS, before);
    });
  });

  describe("precedence", () => {
    it("defaults < file < env < overrides", () => {
      const file = configFile({ http: { port: 1001 }, rtmp: { port: 1002 }, agent: { port: 1003 } });
      const env = { BATON_RTMP_PORT: "2002", BATON_AGENT_PORT: "2003" };

      const fromFile = loadConfig({ env: {}, file });
      assert.equal(fromFile.http.port, 1001);
      assert.equal(fromFile.rtmp.port, 1002);
      assert.equal(fromFile.agent.port, 1003);
      assert.equal(fromFile.hls.segmentDuration, DEFAULTS.hls.segmentDuration);

      const fromEnv = loadConfig({ env, file });
      assert.equal(fromEnv.http.port, 1001, "a key only the file sets keeps the file's value");
      assert.equal(fromEnv.rtmp.port, 2002);
      assert.equal(fromEnv.agent.port, 2003);

      const all = loadConfig({ env, file, overrides: { agent: { port: 3003 } } });
      assert.equal(all.http.port, 1001);
      assert.equal(all.rtmp.port, 2002);
      assert.equal(all.agent.port, 3003);
      assert.deepEqual({ ...all, http: DEFAULTS.http, rtmp: DEFAULTS.rtmp, agent: DEFAULTS.agent }, DEFAULTS, "nothing else changed");
    });

    it("a file changes only the keys it names in a section", () => {
      const config = loadConfig({ env: {}, file: configFile({ hls: { playlistWindow: 10 } }) });
      assert.deepEqual(config.hls, { ...DEFAULTS.hls, playlistWindow: 10 });
    });

    it("env values are parsed to the key's type", () => {
      const ladder = [GOOD_RENDITION, { ...GOOD_RENDITION, name: "b", height: 240 }];
      const config = loadConfig({
        env: {
          BATON_HTTP_PORT: "8081",
          BATON_RTMP_IDLETIMEOUT: "2.5",
          BATON_AUTH_REQUIREPUBLISHTOKEN: "false",
          BATON_TRANSCODE_LADDER: JSON.stringify(ladder),
          BATON_NODE_PUBLICHOST: "example.org",
          BATON_LOG_LEVEL: "debug",
        },
      });
      assert.equal(config.http.port, 8081);
      assert.equal(config.rtmp.idleTimeout, 2.5);
      assert.equal(config.auth.requirePublishToken, false);
      assert.deepEqual(config.transcode.ladder, ladder);
      assert.equal(config.node.publicHost, "example.org");
      assert.equal(config.log.level, "debug");
    });

    it("REDIS_URL sets redis.url, over the file", () => {
      const file = configFile({ redis: { url: "redis://from-file:1" } });
      assert.equal(loadConfig({ env: { REDIS_URL: "redis://from-env:2" } }).redis.url, "redis://from-env:2");
      assert.equal(loadConfig({ env: { REDIS_URL: "redis://from-env:2" }, file }).redis.url, "redis://from-env:2");
    });

    it("BATON_REDIS_URL wins over REDIS_URL", () => {
      const config = loadConfig({ env: { REDIS_URL: "redis://plain:2", BATON_REDIS_URL: "rediss://baton:3" } });
      assert.equal(config.redis.url, "rediss://baton:3");
      const reversed = loadConfig({ env: { BATON_REDIS_URL: "rediss://baton:3", REDIS_URL: "redis://plain:2" } });
      assert.equal(reversed.redis.url, "rediss://baton:3");
    });

    it("takes redis.sentinels as a JSON list of host:port (names, IPv4, bracketed IPv6) and a master name", () => {
      const sentinels = ["sentinel-1.example.org:26379", "10.0.0.2:26379", "[fd00::3]:26380"];
      const config = loadConfig({ env: { BATON_REDIS_SENTINELS: JSON.stringify(sentinels), BATON_REDIS_SENTINELNAME: "baton-main" } });
      assert.deepEqual(config.redis.sentinels, sentinels);
      assert.equal(config.redis.sentinelName, "baton-main");
      assert.deepEqual(loadConfig({ env: {} }).redis.sentinels, []);
    });

    it("takes redis.cluster as a JSON list of seed nodes, with redis.url's password", () => {
      const seeds = ["redis-1.example.org:7000", "10.0.0.2:7001", "[fd00::3]:7002"];
      const config = loadConfig({ env: { BATON_REDIS_CLUSTER: JSON.stringify(seeds), BATON_REDIS_URL: "rediss://:secret@unused:6379" } });
      assert.deepEqual(config.redis.cluster, seeds);
      assert.deepEqual(loadConfig({ env: {} }).redis.cluster, []);
    });

    it("overrides win over BATON_REDIS_URL and REDIS_URL", () => {
      const config = loadConfig({
        env: { REDIS_URL: "redis://plain:2", BATON_REDIS_URL: "redis://baton:3" },
        overrides: { redis: { url: "redis://override:4" } },
      });
      assert.equal(config.redis.url, "redis://override:4");
    });
  });

  describe("hls.inputLoss", () => {
    it("hls.inputLossWindow defaults to hls.reconnectWindow, which keeps working alone; set, it wins", () => {
      assert.equal(loadConfig({ env: {} }).hls.inputLossWindow, DEFAULTS.hls.reconnectWindow);
      assert.equal(loadConfig({ env: { BATON_HLS_RECONNECTWINDOW: "12" } }).hls.inputLossWindow, 12);
      assert.equal(loadConfig({ env: { BATON_HLS_RECONNECTWINDOW: "12", BATON_HLS_INPUTLOSSWINDOW: "45" } }).hls.inputLossWindow, 45);
    });

    it("takes a PNG slate image, and off", () => {
      const config = loadConfig({ env: { BATON_HLS_SLATEIMAGE: "assets/slate.png", BATON_HLS_INPUTLOSS: "off" } });
      assert.deepEqual([config.hls.slateImage, config.hls.inputLoss], ["assets/slate.png", "off"]);
    });
  });

  describe("BATON_CONFIG", () => {
    it("names the file to load", () => {
      const file = configFile({ http: { port: 4321 }, log: { level: "warn" } });
      const config = loadConfig({ env: { BATON_CONFIG: file } });
      assert.equal(config.http.port, 4321);
      assert.equal(config.log.level, "warn");
    });

    it("is not itself taken as a config key", () => {
      const file = configFile({});
      assert.deepEqual(loadConfig({ env: { BATON_CONFIG: file } }), DEFAULTS);
    });

    it("errors in its file name the file", () => {
      const file = configFile({ http: { nope: true } });
      assert.equal(configError({ env: { BATON_CONFIG: file } }).message, `config: unknown key http.nope (from ${file})`);
    });

    it("the file option wins over BATON_CONFIG", () => {
      const named = configFile({ http: { port: 1111 } });
      const given = configFile({ http: { port: 2222 } });
      assert.equal(loadConfig({ env: { BATON_CONFIG: named }, file: given }).http.port, 2222);
    });

    it("env still overrides the file BATON_CONFIG names", () => {
      const file = configFile({ http: { port: 1111 } });
      assert.equal(loadConfig({ env: { BATON_CONFIG: file, BATON_HTTP_PORT: "3333" } }).http.port, 3333);
    });
  });
});
