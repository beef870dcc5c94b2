/**
 * Target: keepalived.conf (src/config/keepalived/index.ts parseKeepalivedConfig), with
 * its includes read from a temporary directory of this run.
 *
 * Properties: it throws nothing but a ConfigError (each diagnostic placed, its message
 * short); an accepted file, converted to YAML (toYaml), reads back to the same services.
 * Inputs: mutations of valid files, with keepalived's keywords, braces, quotes, `$VAR`
 * definitions, `@id` lines and includes as the pieces that are inserted.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseKeepalivedConfig } from '../../../src/config/keepalived/index.js';
import { mutatedText, type FuzzTarget } from '../fuzz.js';
import { parseOrRefuse, yamlRoundTrip } from './config.js';

export const SEEDS = [
  `global_defs {
  router_id LVS_1
}
virtual_server 10.0.0.1 80 {
  delay_loop 6
  lb_algo wlc
  lb_kind NAT
  persistence_timeout 50
  protocol TCP
  sorry_server 192.168.200.200 1358
  real_server 192.168.200.2 80 {
    weight 2
    HTTP_GET {
      url {
        path /health
        status_code 200
      }
      connect_timeout 3
      retry 3
      delay_before_retry 3
    }
  }
  real_server 192.168.200.3 80 {
    weight 1
    inhibit_on_failure
    TCP_CHECK {
      connect_port 80
      connect_timeout 2
    }
  }
}
`,
  `$W=3
virtual_server_group G1 {
  10.0.0.1 80
  10.0.0.2-5 80
  fwmark 7
}
virtual_server group G1 {
  lb_algo sh
  lb_kind DR
  sh-port
  real_server 10.0.1.1 80 {
    weight $W
    MISC_CHECK {
      misc_path "/bin/true x"
      misc_timeout 3
      misc_dynamic
    }
  }
}
`,
  `virtual_server fwmark 1 {
  lb_algo rr
  lb_kind TUN
  protocol UDP
  real_server 2001:db8::2 53 {
    UDP_CHECK {
      payload 0a0b
      require_reply
    }
    DNS_CHECK {
      type A
      name example.com
    }
  }
}
vrrp_script chk {
  script "/bin/true"
  interval 2
}
vrrp_instance VI_1 {
  state MASTER
  interface eth0
  virtual_router_id 51
  priority 150
  advert_int 1
  virtual_ipaddress {
    10.0.0.1/24
  }
  track_script {
    chk
  }
}
`,
  `virtual_server 10.0.0.1 443 {
  lb_algo wrr
  lb_kind NAT
  @fuzz real_server 10.0.1.1 443 {
  @^fuzz real_server 10.0.1.2 443 {
    weight 1
  }
  include inc.conf
}
`,
];
const PIECES = [
  '{',
  '}',
  '\n',
  ' ',
  '"',
  '#',
  '!',
  '$W',
  '$' + '{W}', // keepalived's ${NAME} form
  '$X=',
  '@fuzz ',
  '@^fuzz ',
  'include inc.conf\n',
  'include *.conf\n',
  'include nothing\n',
  '__proto__',
  'constructor',
  'toString',
  'virtual_server ',
  'real_server ',
  'virtual_server_group ',
  'fwmark ',
  'group ',
  'lb_algo ',
  'lb_kind ',
  'NAT',
  'DR',
  'TUN',
  'protocol ',
  'TCP',
  'UDP',
  'SCTP',
  'weight ',
  'persistence_timeout ',
  'persistence_granularity ',
  'HTTP_GET',
  'SSL_GET',
  'TCP_CHECK',
  'UDP_CHECK',
  'DNS_CHECK',
  'MISC_CHECK',
  'SMTP_CHECK',
  'url',
  'path ',
  'digest ',
  'status_code ',
  'connect_port ',
  'connect_timeout ',
  'retry ',
  'delay_loop ',
  'vrrp_instance ',
  'virtual_ipaddress',
  'virtual_router_id ',
  'priority ',
  'advert_int ',
  'quorum ',
  'hysteresis ',
  '10.0.0.1',
  '10.0.0.1-3',
  '::1',
  '2001:db8::1',
  '127.0.0.１',
  '0',
  '-1',
  '65536',
  '4294967296',
  '1.5',
  '1e3',
  '0x10',
  'wlc',
  'mh',
];
const DIR = mkdtempSync(join(tmpdir(), 'tsvs-fuzz-ka-'));
writeFileSync(join(DIR, 'inc.conf'), '  real_server 10.0.1.9 443 {\n    weight 4\n  }\n');
writeFileSync(join(DIR, 'other.conf'), 'virtual_server 10.9.9.9 1 {\n}\n');
const MAIN = join(DIR, 'keepalived.conf');

/** Includes read only this run's directory: a mutated name never reads another file. */
const readFile = (p: string) => {
  if (!p.startsWith(`${DIR}/`)) throw Object.assign(new Error('outside the fuzz directory'), { code: 'ENOENT' });
  return readFileSync(p, 'utf8');
};

export const keepalivedTarget: FuzzTarget = {
  name: 'keepalived.conf',
  properties: [
    {
      name: 'throws nothing but a ConfigError with placed, short diagnostics; accepted files round-trip through toYaml',
      runs: 400,
      // An include pattern with a "[" and no "]", or a range upside down, threw a SyntaxError out of the reader.
      examples: [
        ['virtual_server 10.0.0.1 443 {\n  include inc.wO|qa6[\n}\n'],
        ['include [z-a].conf\n'],
        // A stray "{" in a virtual_server_group threw a TypeError (bench/fuzz.ts, seed 1313).
        ['virtual_server_group G1{ {\n  10.0.0.1 80\n}\n'],
      ],
      property: () =>
        fc.property(mutatedText(SEEDS, PIECES), (t) => {
          const cfg = parseOrRefuse(() => parseKeepalivedConfig(t, MAIN, { configId: 'fuzz', readFile }), 'parseKeepalivedConfig', t);
          if (cfg) yamlRoundTrip(cfg, 'keepalived.conf');
          return true;
        }),
    },
  ],
};
