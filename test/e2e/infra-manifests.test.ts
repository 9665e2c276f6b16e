// The Kubernetes manifests in infra/k8s, checked against the Kubernetes and KEDA schemas
// (kubernetes-models validates against their JSON schemas), and against this codebase: the
// environment variables they set exist, and the KEDA triggers read the real BullMQ wait lists
// of the job catalog's queues.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Env as ApiEnv } from "@hybrid/api/env";
import { jobCatalog, Queues } from "@hybrid/queue";
import { Env as WorkerEnv } from "@hybrid/worker/env";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { Service } from "kubernetes-models/v1/Service";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { repoRoot } from "../../scripts/lib.ts";
import { REDIS_URL } from "./stack.ts";

const dir = join(repoRoot, "infra", "k8s");
const docs = readdirSync(dir)
  .filter((f) => f.endsWith(".yaml"))
  .flatMap((file) =>
    parseAllDocuments(readFileSync(join(dir, file), "utf8")).map((d) => {
      expect(d.errors, file).toEqual([]);
      return { file, doc: d.toJS() as { apiVersion: string; kind: string; metadata: { name: string } } };
    }),
  );

const models: Record<string, new (data: never) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "v1/Service": Service,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};

describe("infra/k8s manifests", () => {
  it("are all valid against the Kubernetes and KEDA schemas", () => {
    expect(docs.length).toBeGreaterThanOrEqual(4);
    for (const { file, doc } of docs) {
      const Model = models[`${doc.apiVersion}/${doc.kind}`];
      // A manifest of a kind nobody validates would pass unseen: add its model above.
      expect(Model, `${file}: ${doc.apiVersion} ${doc.kind}`).toBeDefined();
      expect(
        () => new Model!(doc as never).validate(),
        `${file}: ${doc.kind} ${doc.metadata.name}`,
      ).not.toThrow();
    }
  });

  it("set only environment variables the apps read", () => {
    const known = { api: Object.keys(ApiEnv.shape), worker: Object.keys(WorkerEnv.shape) };
    let checked = 0;
    for (const { doc } of docs.filter((d) => d.doc.kind === "Deployment")) {
      const spec = doc as unknown as {
        spec: { template: { spec: { containers: { name: string; env?: { name: string }[] }[] } } };
      };
      for (const c of spec.spec.template.spec.containers) {
        const names = known[c.name as keyof typeof known];
        expect(names, `container ${c.name}`).toBeDefined();
        for (const e of c.env ?? []) {
          expect(names, `${c.name}: ${e.name}`).toContain(e.name);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(0);
  });

  it("give the API its keys and ADMIN_KEY from secrets, and listen beyond loopback only with them", () => {
    type Container = {
      name: string;
      env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
      volumeMounts?: { name: string; mountPath: string }[];
    };
    const api = docs.find((d) => d.doc.kind === "Deployment" && d.doc.metadata.name === "hybrid-api")!
      .doc as unknown as {
      spec: {
        template: { spec: { containers: Container[]; volumes?: { name: string; secret?: unknown }[] } };
      };
    };
    const pod = api.spec.template.spec;
    const c = pod.containers.find((x) => x.name === "api")!;
    const env = new Map((c.env ?? []).map((e) => [e.name, e]));
    // Every address of the pod (the API's default is loopback).
    expect(env.get("HOST")?.value).toBe("0.0.0.0");
    expect(env.get("ADMIN_KEY")?.valueFrom?.secretKeyRef).toBeDefined();
    const keysFile = env.get("API_KEYS_FILE")?.value ?? "";
    const mount = c.volumeMounts?.find((m) => m.mountPath === dirname(keysFile));
    expect(mount, `a volume at ${dirname(keysFile)}`).toBeDefined();
    expect(pod.volumes?.find((v) => v.name === mount!.name)?.secret).toBeDefined();

    const compose = parse(readFileSync(join(repoRoot, "infra", "compose.yaml"), "utf8")) as {
      services: { api: { environment: Record<string, string>; secrets: string[] } };
      secrets: Record<string, { file: string }>;
    };
    const composeApi = compose.services.api;
    expect(composeApi.environment.HOST).toBe("0.0.0.0");
    expect(Object.keys(composeApi.environment).every((k) => k in ApiEnv.shape)).toBe(true);
    // Compose mounts secret NAME at /run/secrets/NAME.
    const secret = /^\/run\/secrets\/([\w-]+)$/.exec(composeApi.environment.API_KEYS_FILE ?? "")?.[1];
    expect(secret).toBeDefined();
    expect(composeApi.secrets).toContain(secret);
    expect(compose.secrets[secret!]?.file).toBeDefined();
    // Interpolated from the operator's environment, and required (`:?`): never a default in the file.
    expect(composeApi.environment.ADMIN_KEY).toMatch(/^\$\{ADMIN_KEY:\?/);
  });

  it("scale workers on the wait lists BullMQ really uses for the catalog's queues", async () => {
    const triggers = docs
      .filter((d) => d.doc.kind === "ScaledObject")
      .flatMap(
        (d) =>
          (d.doc as unknown as { spec: { triggers: { type: string; metadata: Record<string, string> }[] } })
            .spec.triggers,
      )
      .filter((t) => t.type === "redis");
    expect(triggers.length).toBeGreaterThan(0);
    for (const t of triggers) {
      // `<QUEUE_PREFIX>:{<queue>}:<queue>:wait` for a queue named like the catalog names them.
      const queue = /^[^:]+:\{([^}]+)\}:/.exec(t.metadata.listName ?? "")?.[1];
      expect(queue, t.metadata.listName).toBeDefined();
      const [kind, ...model] = queue!.split("-");
      expect(jobCatalog.queue(kind as "decode", model.join("-"))).toBe(queue);
      // The deployment's default prefix, and the key BullMQ itself builds for the queue's wait list.
      const queues = new Queues(REDIS_URL, WorkerEnv.shape.QUEUE_PREFIX.parse(undefined));
      try {
        expect(t.metadata.listName).toBe(queues.queue(queue!).toKey("wait"));
      } finally {
        await queues.close();
      }
    }
  });
});
