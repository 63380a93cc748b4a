package contract

// MaxPeers is the largest group seed-discovery can see, and so the largest
// expected-peers (ExpectedPeersRange): 2328 pods.
//
// Why: seed-discovery sees the group in one DNS answer, over TCP when UDP
// truncates, and a TCP message is at most 65,535 bytes (a 16-bit length
// prefix, RFC 1035 4.2.2). A larger group cannot be seen whole: the server
// sets TC even over TCP, seed-discovery reports that (exit 5) instead of
// taking a part for the whole, and an expected-peers above what fits could
// never be reached. One answer holds, besides its records, a 12-byte header,
// the question (the longest name, 255 bytes, plus type and class) and the
// EDNS OPT record (11 bytes, plus a 44-byte DNS COOKIE option, RFC 7873, the
// largest option a resolver adds unasked): 65,209 bytes are left. Each
// record's owner name compresses to a 2-byte pointer to the question, so
// an A record takes 16 bytes (4,075 fit) and an AAAA record 28 (2,328 fit).
// A pod has at most one address per family, so IPv6-only and dual-stack
// groups are bounded by the AAAA answer: 2,328 pods.
//
// SRV answers (peergroup.dev/port-name) carry fewer, and how many depends
// on the names: each record holds its target name uncompressed (RFC 2782;
// CoreDNS writes it so), 18 bytes plus the target's length, so about 1,000
// records fit for targets like cassandra-12.cassandra.db.svc.cluster.local.
// and 238 for the longest names Kubernetes allows. The range does not follow
// that worst case, which would refuse groups A and AAAA answers carry well;
// a group too large for its SRV answer is reported as a truncated answer
// like any other, naming port-name (docs/design.md, seed-discovery).
const MaxPeers = (dnsMessageMax - dnsHeader - dnsQuestionMax - dnsOPTMax) / dnsAAAARecord

// DNS message sizes behind MaxPeers, in bytes.
const (
	dnsMessageMax  = 65535   // TCP length prefix (RFC 1035 4.2.2)
	dnsHeader      = 12      // RFC 1035 4.1.1
	dnsQuestionMax = 255 + 4 // longest name (RFC 1035 2.3.4), QTYPE, QCLASS
	dnsOPTMax      = 11 + 44 // OPT record (RFC 6891) with a server cookie: 4 + 8 + 32 (RFC 7873)
	dnsRecordFixed = 2 + 10  // owner as a compression pointer; TYPE, CLASS, TTL, RDLENGTH
	dnsARecord     = dnsRecordFixed + 4
	dnsAAAARecord  = dnsRecordFixed + 16
)

// maxARecords is how many A records fit in the same answer (4,075): more
// than MaxPeers, so the AAAA answer is the bound.
const maxARecords = (dnsMessageMax - dnsHeader - dnsQuestionMax - dnsOPTMax) / dnsARecord
