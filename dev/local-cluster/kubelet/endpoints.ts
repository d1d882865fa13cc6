/**
 * The endpoints controller's part, for the Services among the rendered objects: one Endpoints object per
 * Service with a selector, listing the ready pods the selector matches, each Service port's targetPort
 * resolved against the pods' container ports, and kept current as the kubelet harness starts, probes and
 * stops pods. kube-apiserver (started with --enable-aggregator-routing, dev/local-cluster/controlplane) resolves a
 * webhook's `clientConfig.service` through these, as it would through the ClusterIP with kube-proxy.
 */
import { CoreV1Api, type KubeConfig, type V1EndpointSubset, type V1Endpoints } from '@kubernetes/client-node';
import type { K8sObject } from './render.js';
import type { Kubelet } from './kubelet.js';

interface ServicePort {
  name?: string;
  port: number;
  protocol?: string;
}

export class EndpointsController {
  private readonly core: CoreV1Api;
  private readonly written = new Map<string, string>();
  private syncing: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  private readonly unsubscribe: () => void;

  constructor(
    kc: KubeConfig,
    private readonly kubelet: Kubelet,
    objects: K8sObject[],
    private readonly log: (message: string) => void = () => {},
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    // A Service without a selector has its Endpoints managed by someone else, as on a real cluster.
    this.services = objects.filter((o) => o.kind === 'Service' && Object.keys((o['spec']?.selector ?? {}) as object).length > 0);
    this.unsubscribe = kubelet.onPodsChanged(() => this.sync());
  }

  private readonly services: K8sObject[];

  /** What the Endpoints object of `service` should hold now. */
  desired(service: K8sObject): V1Endpoints {
    const subsets: V1EndpointSubset[] = [];
    for (const port of (service['spec']?.ports ?? []) as ServicePort[]) {
      const ready = this.kubelet.serviceEndpoints(service, port.name);
      if (ready.length === 0) continue;
      // The endpoints controller groups addresses by their port; the targetPort may differ between pods.
      for (const number of [...new Set(ready.map((e) => e.port))].sort((a, b) => a - b)) {
        const addresses = ready
          .filter((e) => e.port === number)
          .sort((a, b) => a.ip.localeCompare(b.ip))
          .map((e) => ({ ip: e.ip, nodeName: e.pod.plan.nodeName, targetRef: { kind: 'Pod', namespace: e.pod.namespace, name: e.pod.name, uid: e.pod.uid } }));
        subsets.push({ addresses, ports: [{ ...(port.name ? { name: port.name } : {}), port: number, protocol: port.protocol ?? 'TCP' }] });
      }
    }
    return { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: service.metadata.name, namespace: service.metadata.namespace ?? 'default' }, subsets };
  }

  /** Brings every Endpoints object up to date; calls made while a sync runs are folded into one more pass. */
  sync(): Promise<void> {
    this.dirty = true;
    this.syncing ??= (async () => {
      let failed = false;
      while (this.dirty && !this.stopped) {
        this.dirty = false;
        for (const service of this.services) {
          await this.write(this.desired(service)).catch((err: Error) => {
            failed = true;
            this.log(`endpoints ${service.metadata.name}: ${err.message}`);
          });
        }
      }
      // Retried as a controller requeues, not in a tight loop.
      if (failed && !this.stopped) setTimeout(() => void this.sync(), 1000).unref();
    })().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async write(endpoints: V1Endpoints): Promise<void> {
    const { name, namespace } = endpoints.metadata as { name: string; namespace: string };
    const key = `${namespace}/${name}`;
    const body = JSON.stringify(endpoints.subsets);
    if (this.written.get(key) === body) return;
    const current = await this.core.readNamespacedEndpoints({ namespace, name }).catch((err: { code?: number }) => {
      if (err.code === 404) return undefined;
      throw err;
    });
    if (current) await this.core.replaceNamespacedEndpoints({ namespace, name, body: { ...endpoints, metadata: { ...endpoints.metadata, resourceVersion: current.metadata?.resourceVersion } } });
    else await this.core.createNamespacedEndpoints({ namespace, body: endpoints });
    this.written.set(key, body);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    await this.syncing;
  }
}
