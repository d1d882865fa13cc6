import type { Logger } from '../lib/log.js';
import type { ClusterClient, ClusterNetwork } from './azure/types.js';

/** The flag that accepts kubenet. Named as aad-pod-identity named it, so migrating teams recognise it. */
export const ALLOW_KUBENET_FLAG = '--allow-network-plugin-kubenet';

/** The cluster's network plugin lets pods claim each other's IPs, and the operator was not told to accept that. */
export class NetworkPluginRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetworkPluginRefusedError';
  }
}

export interface NetworkPluginCheck {
  /** The AKS cluster; without it the plugin cannot be read and the check is skipped (and says so). */
  aksClusterId?: string;
  allowKubenet: boolean;
}

/**
 * Why kubenet is refused by default: the agent identifies a caller by its TCP source IP. On kubenet, pods sit
 * on a Linux bridge, so a pod with NET_RAW (the container runtime's default) can answer ARP for another pod's
 * IP on the same node and receive its traffic, or send from that IP: it is then attributed as that pod and gets
 * that pod's token. Azure CNI gives each pod its own interface routed by the host, which does not accept such
 * spoofing. Runs before anything is served or reconciled; refuses by throwing NetworkPluginRefusedError.
 */
export async function checkNetworkPlugin(cluster: ClusterClient, check: NetworkPluginCheck, logger?: Logger): Promise<ClusterNetwork | undefined> {
  if (!check.aksClusterId) {
    logger?.info('network plugin not checked: no --aks-cluster-id. On kubenet (or any bridge-based CNI), pods with NET_RAW can take over other pods\' IPs; drop NET_RAW (see config/security)');
    return undefined;
  }
  const network = await cluster.getNetwork(check.aksClusterId);
  const plugin = network.networkPlugin?.toLowerCase();
  const fields = { aksClusterId: check.aksClusterId, ...network };
  // Azure CNI's legacy bridge mode puts pods on the azure0 bridge: the same ARP exposure as kubenet.
  const bridged = plugin === 'azure' && network.networkMode?.toLowerCase() === 'bridge';
  if (plugin === 'kubenet' || plugin === undefined || bridged) {
    const what =
      plugin === 'kubenet'
        ? 'the cluster uses the kubenet network plugin'
        : bridged
          ? 'the cluster uses Azure CNI in bridge mode (networkProfile.networkMode bridge: pods share a Linux bridge)'
          : 'the cluster did not report its network plugin (networkProfile.networkPlugin)';
    if (!check.allowKubenet) {
      const message = `refusing to start: ${what}, where a pod with NET_RAW can ARP-spoof another pod's IP on its node and be handed that pod's Azure tokens. Use Azure CNI, or accept the risk with ${ALLOW_KUBENET_FLAG} after dropping NET_RAW from every workload (config/security/drop-net-raw.yaml)`;
      logger?.error(message, fields);
      throw new NetworkPluginRefusedError(message);
    }
    logger?.warn(`${what}; running because ${ALLOW_KUBENET_FLAG} is set. Pods with NET_RAW can impersonate other pods on their node: make sure NET_RAW is dropped (config/security/drop-net-raw.yaml)`, fields);
  } else if (plugin === 'none') {
    logger?.warn('the cluster brings its own CNI (networkPlugin none): the operator cannot tell whether pods can take over other pods\' IPs. Use a CNI that prevents IP and ARP spoofing, and drop NET_RAW (config/security/drop-net-raw.yaml)', fields);
  } else {
    logger?.info('network plugin checked', fields);
  }
  return network;
}
