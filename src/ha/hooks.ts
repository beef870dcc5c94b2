/**
 * What the rest of the director does around a VRRP transition. The speaker (src/ha) calls
 * these in order and awaits each one, so that state sync (src/sync: conntrackd and the IPVS
 * sync daemon) can put the connection state in place before the VIPs move:
 *
 *   becoming MASTER:  beforeMaster()  -> add VIPs, gratuitous ARP / unsolicited NA -> afterMaster()
 *   leaving MASTER:   remove VIPs     -> afterBackup()
 *
 * A hook that throws is logged and does not stop the transition: a director that must take
 * over serves without synced state rather than not at all.
 */

export interface HaTransitionHooks {
  /** Before the VIPs are added (conntrackd -c: commit the external cache to the kernel). */
  beforeMaster?(instance: string): Promise<void>;
  /** After the VIPs are added and announced (conntrackd -f, -R, -B; sync daemon to master). */
  afterMaster?(instance: string): Promise<void>;
  /** After the VIPs are removed on leaving MASTER (conntrackd -t, -n; sync daemon to backup). */
  afterBackup?(instance: string): Promise<void>;
}
