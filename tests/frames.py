#!/usr/bin/env python3
"""Independent raw-frame tool for the integration tests (no fastpath code involved).

  frames.py send IFACE KIND COUNT DST_MAC SRC_MAC SRC_IP DST_IP
      sends COUNT crafted frames of KIND, then listens 0.5 s; prints JSON
      {"sent": n, "reflected": m, "icmp_unreachable": k} where `reflected` counts frames that came
      back carrying the ITO signature.
  frames.py watch IFACE SECONDS
      counts ICMP/ICMPv6 port-unreachable and IPv4 ITO-signed frames arriving on IFACE for SECONDS; prints JSON.

KIND: ito | broadcast | multicast | foreign-dst | wrong-oui | wrong-port | no-signature | src-is-dst | tcp
"""
import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac(s: str) -> bytes:
    return bytes(int(x, 16) for x in s.split(":"))


def frame(kind: str, dst: bytes, src: bytes, sip: bytes, dip: bytes) -> bytes:
    sig = b"DATA:OT"
    dport = 3842
    proto = 17
    if kind == "broadcast":
        dst = b"\xff" * 6
    elif kind == "multicast":
        dst = bytes.fromhex("01005e000001")
    elif kind == "foreign-dst":
        dst = bytes.fromhex("020000000099")
    elif kind == "wrong-oui":
        src = bytes.fromhex("02aabb000002")
    elif kind == "wrong-port":
        dport = 3843
    elif kind == "no-signature":
        sig = b"NOTITO!"
    elif kind == "src-is-dst":
        src = dst
    elif kind == "tcp":
        proto = 6
    payload = bytes([0x09, 0x10, 0xEA, 0x1D, 0x00]) + sig + bytes(6)
    udp = struct.pack("!HHHH", 50000, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, proto, 0, sip, dip)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst + src + b"\x08\x00" + ip + udp


def classify(buf: bytes):
    """Returns 'ito' for a frame with the ITO signature, 'icmp_unreach' for ICMP (IPv4 or IPv6) port
    unreachable."""
    if len(buf) >= 56 and buf[12:14] == b"\x86\xdd":
        # IPv6 without extension headers: next header 58 (ICMPv6), type 1 code 4 (port unreachable)
        return "icmp_unreach" if buf[20] == 58 and buf[54] == 1 and buf[55] == 4 else None
    if len(buf) < 34 or buf[12:14] != b"\x08\x00":
        return None
    ihl = (buf[14] & 0x0F) * 4
    proto = buf[23]
    l4 = 14 + ihl
    if proto == 1 and len(buf) >= l4 + 2 and buf[l4] == 3 and buf[l4 + 1] == 3:
        return "icmp_unreach"
    if proto == 17 and len(buf) >= l4 + 8 + 12 and buf[l4 + 8 + 5 : l4 + 8 + 12] in (b"DATA:OT", b"NOTITO!"):
        return "ito"
    return None


def listen(sock, seconds: float):
    counts = {"reflected": 0, "icmp_unreachable": 0}
    end = time.monotonic() + seconds
    sock.settimeout(0.05)
    while time.monotonic() < end:
        try:
            buf, addr = sock.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        kind = classify(buf)
        if kind == "ito":
            counts["reflected"] += 1
        elif kind == "icmp_unreach":
            counts["icmp_unreachable"] += 1
    return counts


def main():
    cmd, iface = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    if cmd == "watch":
        print(json.dumps(listen(sock, float(sys.argv[3]))))
        return
    kind, count = sys.argv[3], int(sys.argv[4])
    dst, src = mac(sys.argv[5]), mac(sys.argv[6])
    sip, dip = socket.inet_aton(sys.argv[7]), socket.inet_aton(sys.argv[8])
    f = frame(kind, dst, src, sip, dip)
    for _ in range(count):
        sock.send(f)
        time.sleep(0.0005)
    counts = listen(sock, 0.5)
    print(json.dumps({"sent": count, **counts}))


if __name__ == "__main__":
    main()
