#!/usr/bin/env python3
"""Independent raw-frame tool for the integration tests (no fastpath code involved).

  frames.py send IFACE KIND COUNT DST_MAC SRC_MAC SRC_IP DST_IP [LISTEN_IFACE]
      sends COUNT crafted frames of KIND, then listens 0.5 s (on LISTEN_IFACE if given: the parent
      of a VLAN device sent through, where tagged reflections arrive); prints JSON
      {"sent": n, "reflected": m, "icmp_unreachable": k, "tags": {STACK: count}} where `reflected`
      counts frames that came back carrying the ITO signature and `tags` counts them by their VLAN
      tags, outermost first, as "TPID/VID/PCP" joined by "+" ("" for untagged), whether the kernel
      handed the outer tag over as metadata (PACKET_AUXDATA) or it stayed in the frame.
  frames.py send --tag-meta IFACE ...
      the same, with a tcx egress program on IFACE (for as long as the tool runs) that moves each
      frame's outermost VLAN tag into the packet's metadata, as a Linux VLAN device or a tagging
      switch port in front of a NIC with rx-vlan offload hands it to the receiving driver.
  frames.py watch IFACE SECONDS
      counts ICMP/ICMPv6 port-unreachable and IPv4 ITO-signed frames arriving on IFACE for SECONDS; prints JSON.

KIND: ito | vlan (802.1Q 100/5) | qinq (802.1ad 20/3 outside 802.1Q 100/5) | broadcast | multicast | foreign-dst | wrong-oui | wrong-port | no-signature | src-is-dst | tcp
"""
import json
import os
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
TPIDS = (0x8100, 0x88A8)


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
    tags = b""
    if kind == "vlan":
        tags = struct.pack("!HH", 0x8100, (5 << 13) | 100)
    elif kind == "qinq":
        tags = struct.pack("!HHHH", 0x88A8, (3 << 13) | 20, 0x8100, (5 << 13) | 100)
    payload = bytes([0x09, 0x10, 0xEA, 0x1D, 0x00]) + sig + bytes(6)
    udp = struct.pack("!HHHH", 50000, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, proto, 0, sip, dip)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst + src + tags + b"\x08\x00" + ip + udp


def tag_text(tpid: int, tci: int) -> str:
    return f"{tpid:04x}/{tci & 0xFFF}/{tci >> 13}"


def untag(buf: bytes, aux):
    """The frame without its inline VLAN tags, and every tag (the kernel's metadata one first)."""
    tags = []
    if aux is not None:
        status, _len, _snap, _mac, _net, tci, tpid = aux
        if status & TP_STATUS_VLAN_VALID:
            tags.append(tag_text(tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100, tci))
    while len(buf) >= 18 and struct.unpack("!H", buf[12:14])[0] in TPIDS:
        tpid, tci = struct.unpack("!HH", buf[12:16])
        tags.append(tag_text(tpid, tci))
        buf = buf[:12] + buf[16:]
    return buf, "+".join(tags)


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
    counts = {"reflected": 0, "icmp_unreachable": 0, "tags": {}}
    end = time.monotonic() + seconds
    sock.settimeout(0.05)
    while time.monotonic() < end:
        try:
            buf, anc, _flags, addr = sock.recvmsg(65535, socket.CMSG_SPACE(20))
        except socket.timeout:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        aux = None
        for level, kind, data in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 20:
                aux = struct.unpack("IIIHHHH", data[:20])
        buf, tags = untag(buf, aux)
        kind = classify(buf)
        if kind == "ito":
            counts["reflected"] += 1
            counts["tags"][tags] = counts["tags"].get(tags, 0) + 1
        elif kind == "icmp_unreach":
            counts["icmp_unreachable"] += 1
    return counts


def bpf(cmd: int, attr: bytes) -> int:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, 128)
    fd = libc.syscall(321, cmd, buf, 128)  # SYS_bpf on x86-64
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"bpf({cmd})")
    return fd


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def tag_to_metadata(ifindex: int) -> int:
    """Attaches (tcx egress, BPF_LINK_CREATE) a program doing what a VLAN device's transmit does:
    the outermost inline tag becomes the skb's VLAN metadata (bpf_skb_vlan_pop, then
    bpf_skb_vlan_push). Returns the link's fd; closing it (exiting) detaches."""
    prog = b"".join([
        insn(0xBF, 6, 1),                    # r6 = skb
        insn(0xB7, 2, imm=12),               # r2 = 12
        insn(0xBF, 3, 10), insn(0x07, 3, imm=-8),  # r3 = fp - 8
        insn(0xB7, 4, imm=4),                # r4 = 4
        insn(0x85, imm=26),                  # bpf_skb_load_bytes(skb, 12, fp-8, 4)
        insn(0x55, 0, off=12, imm=0),        # if r0 != 0 goto out
        insn(0x69, 7, 10, -8),               # r7 = tpid (network order)
        insn(0x69, 8, 10, -6),               # r8 = tci (network order)
        insn(0x15, 7, off=1, imm=0x0081),    # if tpid == 0x8100 goto tagged
        insn(0x55, 7, off=8, imm=0xA888),    # if tpid != 0x88a8 goto out
        insn(0xBF, 1, 6),                    # tagged: r1 = skb
        insn(0x85, imm=19),                  # bpf_skb_vlan_pop(skb)
        insn(0x55, 0, off=5, imm=0),         # if r0 != 0 goto out
        insn(0xBF, 1, 6),                    # r1 = skb
        insn(0xBF, 2, 7),                    # r2 = tpid (__be16)
        insn(0xBF, 3, 8), insn(0xDC, 3, imm=16),  # r3 = tci in host order
        insn(0x85, imm=18),                  # bpf_skb_vlan_push(skb, tpid, tci)
        insn(0xB7, 0, imm=0),                # out: r0 = TCX_PASS
        insn(0x95),                          # exit
    ])
    import ctypes
    code = ctypes.create_string_buffer(prog, len(prog))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    # union bpf_attr for BPF_PROG_LOAD: type, insn_cnt, insns, license, log_level, log_size, log_buf
    attr = struct.pack("<IIQQIIQ", 3, len(prog) // 8, ctypes.addressof(code), ctypes.addressof(lic), 1,
                       len(log), ctypes.addressof(log))
    try:
        prog_fd = bpf(5, attr)
    except OSError as e:
        raise OSError(e.errno, f"loading the tag-to-metadata program: {log.value.decode()}") from e
    # BPF_LINK_CREATE: prog_fd, target_ifindex, attach_type (BPF_TCX_EGRESS), flags
    return bpf(28, struct.pack("<IIII", prog_fd, ifindex, 47, 0))


def main():
    meta = "--tag-meta" in sys.argv
    if meta:
        sys.argv.remove("--tag-meta")
    cmd, iface = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    link = tag_to_metadata(socket.if_nametoindex(iface)) if meta else None
    if cmd == "watch":
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        print(json.dumps(listen(sock, float(sys.argv[3]))))
        return
    kind, count = sys.argv[3], int(sys.argv[4])
    dst, src = mac(sys.argv[5]), mac(sys.argv[6])
    sip, dip = socket.inet_aton(sys.argv[7]), socket.inet_aton(sys.argv[8])
    f = frame(kind, dst, src, sip, dip)
    rx = sock
    if len(sys.argv) > 9:
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        rx.bind((sys.argv[9], 0))
    rx.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    for _ in range(count):
        sock.send(f)
        time.sleep(0.0005)
    counts = listen(rx, 0.5)
    print(json.dumps({"sent": count, **counts}))
    if link is not None:
        os.close(link)


if __name__ == "__main__":
    main()
