/** The parts of rendered Deployments and DaemonSets that the kubelet harness runs. */
import type { K8sObject } from './render.js';

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string; optional?: boolean };
  };
}

export interface HttpProbe {
  httpGet?: { path?: string; port: number | string; scheme?: string };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  failureThreshold?: number;
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: HttpProbe;
  livenessProbe?: HttpProbe;
}

export interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    serviceAccountName?: string;
    hostNetwork?: boolean;
    terminationGracePeriodSeconds?: number;
    initContainers?: Container[];
    containers: Container[];
    [field: string]: unknown;
  };
}

export type Workload = K8sObject & { kind: 'Deployment' | 'DaemonSet'; spec: { replicas?: number; template: PodTemplate } };

export function workloads(objects: K8sObject[]): Workload[] {
  return objects.filter((o): o is Workload => o.kind === 'Deployment' || o.kind === 'DaemonSet');
}

export function workloadContainers(objects: K8sObject[]): { workload: Workload; container: Container; init: boolean }[] {
  return workloads(objects).flatMap((workload) => [
    ...(workload.spec.template.spec.initContainers ?? []).map((container) => ({ workload, container, init: true })),
    ...workload.spec.template.spec.containers.map((container) => ({ workload, container, init: false })),
  ]);
}
