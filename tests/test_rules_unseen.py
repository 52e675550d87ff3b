"""Lines the rules were not written from: hand-written, unambiguous responses in the style of
publicly documented provider and MTA responses (Gmail, Outlook / Exchange Online, Yahoo / AOL,
iCloud, Comcast, GMX / web.de, Orange, Mail.ru, Yandex, QQ, NetEase, Postfix, Exim, Sendmail,
qmail, Exchange, Proofpoint, Mimecast, Barracuda, Cisco, Trend Micro, Amavis, rspamd, ...).

The wording is our own, modelled on those documents, and deliberately varies from the texts the
rules cite (other addresses, hosts, word order, languages), so this table measures how the rules
generalise. Every line is asserted; the table covers every predefined label the shipped rules
produce. rules/README.md "A label names what the line says" decides the expected labels.

First runs, before the rules were changed for them: the first table (249 lines) scored 237 right
(95.2%) on the rules it was written against; the old round-one rules score 230 (92.4%). The
misses were fixed with generic rules, never with a pattern for one line.
"""

from __future__ import annotations

import pytest

from streamer.classifier import Classifier
from streamer.config import shipped_rule_files
from streamer.rules import load_rules

UNSEEN: list[tuple[str, str]] = [
    # --- InvalidRecipient ------------------------------------------------------------------------
    (
        "550 5.1.1 <jane.roe@example.org>: Recipient address rejected: User unknown in virtual "
        "mailbox table",
        "InvalidRecipient",
    ),
    ("550 5.1.1 Sorry, the mailbox jane@example.org does not exist here", "InvalidRecipient"),
    (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient jane@contoso.example not found by "
        "SMTP address lookup",
        "InvalidRecipient",
    ),
    (
        "554 delivery error: dd Requested mail action aborted, mailbox not found - "
        "mta4102.mail.bf1.yahoo.com",
        "InvalidRecipient",
    ),
    ("550 Requested action not taken: mailbox unavailable (invalid address)", "InvalidRecipient"),
    ("550 Unknown user jim@example.net", "InvalidRecipient"),
    ("550 5.1.1 unknown or illegal alias: sales-old@example.com", "InvalidRecipient"),
    (
        "550 Message was not accepted -- invalid mailbox. Local mailbox ivan@mail.example is "
        "unavailable: user not found",
        "InvalidRecipient",
    ),
    ("550 5.7.1 No such user!", "InvalidRecipient"),
    (
        "550 Requested action not taken: mailbox unavailable (mxgmx107) Mailbox not found",
        "InvalidRecipient",
    ),
    ("550 5.1.1 <tom@icloud.example>: user does not exist", "InvalidRecipient"),
    (
        "550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. LPN007_416",
        "InvalidRecipient",
    ),
    (
        "550 Mailbox not found. http://service.mail.qq.com/cgi-bin/help?subtype=1&&no=1000728",
        "InvalidRecipient",
    ),
    ("550 User not found: li.wei@163.example", "InvalidRecipient"),
    ("511 sorry, no mailbox here by that name (#5.1.1)", "InvalidRecipient"),
    (
        "550 5.0.0 User anna@example.com not listed in public Name & Address Book",
        "InvalidRecipient",
    ),
    ("550 5.1.1 Empfaenger unbekannt", "InvalidRecipient"),
    (
        "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550",
        "InvalidRecipient",
    ),
    ("550 No such user (paul@example.com)", "InvalidRecipient"),
    ("550 5.1.1 User does not exist - <amit@example.in>", "InvalidRecipient"),
    ("553 5.1.3 Bad recipient address syntax", "InvalidRecipient"),
    ("550 5.1.1 The address you sent to is not a known recipient here", "InvalidRecipient"),
    ("550 Destinatario inexistente", "InvalidRecipient"),
    ("550 5.1.1 Recipient unknown: rita@example.it", "InvalidRecipient"),
    # --- InactiveMailbox -------------------------------------------------------------------------
    ("550 5.2.1 The email account that you tried to reach is inactive.", "InactiveMailbox"),
    (
        "554 delivery error: dd Sorry your message to kim@yahoo.example cannot be delivered. "
        "This mailbox is disabled (554.30).",
        "InactiveMailbox",
    ),
    ("550 5.2.1 Mailbox disabled, not accepting messages", "InactiveMailbox"),
    (
        "550 Message was not accepted -- invalid mailbox. Local mailbox olga@mail.example is "
        "unavailable: account is disabled",
        "InactiveMailbox",
    ),
    ("550 5.2.1 User account has expired", "InactiveMailbox"),
    ("550 This account has been suspended", "InactiveMailbox"),
    ("550 5.2.1 Recipient mailbox has been deactivated", "InactiveMailbox"),
    ("550 5.7.13 User account disabled", "InactiveMailbox"),
    ("554 5.2.1 The mailbox you are writing to is locked", "InactiveMailbox"),
    ("550 Account closed due to inactivity", "InactiveMailbox"),
    # --- QuotaIssues -----------------------------------------------------------------------------
    (
        "452 4.2.2 The recipient's inbox is out of storage space. Please direct the recipient "
        "to https://support.google.com/mail/?p=OverQuotaTemp",
        "QuotaIssues",
    ),
    (
        "552 5.2.2 Mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
        "MapiExceptionShutoffQuotaExceeded",
        "QuotaIssues",
    ),
    ("552 1 Requested mail action aborted, mailbox full", "QuotaIssues"),
    (
        "452 4.2.2 <ben@example.com>: Recipient mailbox is full, try again later",
        "QuotaIssues",
    ),
    ("552 5.2.2 <ben@example.com> Quota exceeded (mailbox for user is full)", "QuotaIssues"),
    ("552 5.2.2 <sam@icloud.example>: user is over quota", "QuotaIssues"),
    ("452 4.3.1 Insufficient system storage", "QuotaIssues"),
    ("552 5.3.4 Message size exceeds fixed maximum message size", "QuotaIssues"),
    ("552 5.2.3 Message exceeds maximum size allowed by the recipient", "QuotaIssues"),
    ("552 Das Postfach des Empfaengers ist voll", "QuotaIssues"),
    ("552 Buzón lleno", "QuotaIssues"),
    ("550 Mailbox is full", "QuotaIssues"),
    ("552 Requested mail action aborted: exceeded mailsize limit", "QuotaIssues"),
    ("452 4.2.2 Over quota, please try again later", "QuotaIssues"),
    ("552 5.3.4 Message too big for system", "QuotaIssues"),
    # --- TooManyRecipients -----------------------------------------------------------------------
    ("452 4.5.3 Too many recipients", "TooManyRecipients"),
    ("452 Too many recipients received this hour", "TooManyRecipients"),
    ("550 5.7.1 Recipient limit exceeded for this message", "TooManyRecipients"),
    ("452 4.5.3 Error: too many recipients", "TooManyRecipients"),
    ("421 Maximum number of recipients per message exceeded", "TooManyRecipients"),
    ("452 4.5.3 Your message has too many recipients.", "TooManyRecipients"),
    (
        "550 5.5.3 RESOLVER.ADR.RecipLimit; number of recipients exceeds the limit",
        "TooManyRecipients",
    ),
    # --- TransientFailure ------------------------------------------------------------------------
    (
        "450 4.2.0 <ann@example.com>: Recipient address rejected: Greylisted, see "
        "http://postgrey.example/help/example.com.html",
        "TransientFailure",
    ),
    ("451 4.7.1 Please try again later", "TransientFailure"),
    ("421 4.7.0 Try again later, closing connection.", "TransientFailure"),
    ("451 4.7.500 Server busy. Please try again later from [192.0.2.44].", "TransientFailure"),
    (
        "451 Internal resource temporarily unavailable - "
        "https://community.mimecast.com/docs/DOC-1369#451",
        "TransientFailure",
    ),
    ("421 4.3.2 System not accepting network messages", "TransientFailure"),
    ("451 4.3.0 Temporary system problem. Try again later.", "TransientFailure"),
    ("421 Throttled, please try again later", "TransientFailure"),
    ("421 4.7.0 Too many concurrent SMTP connections; please try again later.", "TransientFailure"),
    ("451 Greylisted, please try again in 5 minutes", "TransientFailure"),
    (
        "450 4.2.1 The user you are trying to contact is receiving mail too quickly",
        "TransientFailure",
    ),
    ("421 4.7.0 Rate limit exceeded for your IP, slow down", "TransientFailure"),
    ("452 4.3.2 Service temporarily unavailable", "TransientFailure"),
    (
        "421 mwinf5c42 ME Service refuse. Veuillez essayer plus tard. Service refused, please "
        "try later. OFR_999 [104]",
        "TransientFailure",
    ),
    ("451 4.7.650 The mail server is temporarily busy", "TransientFailure"),
    # --- MessageExpired --------------------------------------------------------------------------
    ("451 4.4.7 Delivery time expired", "MessageExpired"),
    ("550 5.4.7 Message expired: unable to deliver in 840 minutes", "MessageExpired"),
    ("550 4.4.7 QUEUE.Expired; message expired", "MessageExpired"),
    ("451 Retry timeout exceeded for all hosts", "MessageExpired"),
    ("451 4.4.7 Message could not be delivered for 5 days", "MessageExpired"),
    (
        "451 I'm not going to try again; this message has been in the queue too long.",
        "MessageExpired",
    ),
    ("554 5.4.7 Message expired: too many delivery attempts", "MessageExpired"),
    (
        "550 5.4.7 The message could not be delivered within the maximum retry period",
        "MessageExpired",
    ),
    ("550 Message has been undeliverable for 3 days; giving up", "MessageExpired"),
    ("554 Envelope expired after 4 days in queue", "MessageExpired"),
    ("421 4.4.7 Message expired in queue", "MessageExpired"),
    # --- NoAnswerFromHost ------------------------------------------------------------------------
    (
        "451 4.4.1 connect to mx.example.net[203.0.113.5]:25: Connection timed out",
        "NoAnswerFromHost",
    ),
    ("451 SMTP timeout after end of data (12288 bytes written)", "NoAnswerFromHost"),
    ("421 4.4.1 Host mx.example.net is not responding", "NoAnswerFromHost"),
    ("451 4.4.1 No answer from host", "NoAnswerFromHost"),
    (
        "451 4.4.2 conversation with mx.example.net[203.0.113.9] timed out while receiving the "
        "initial server greeting",
        "NoAnswerFromHost",
    ),
    (
        "451 4.4.0 Error encountered while communicating with primary target IP address: "
        '"Failed to connect. Winsock error code: 10060, Win32 error code: 10060."',
        "NoAnswerFromHost",
    ),
    ("451 4.4.1 Network is unreachable", "NoAnswerFromHost"),
    ("451 4.4.1 No route to host", "NoAnswerFromHost"),
    ("421 4.4.2 Read timeout while waiting for the server reply", "NoAnswerFromHost"),
    ("451 Operation timed out", "NoAnswerFromHost"),
    ("451 4.4.1 Timeout waiting for response from mx.example.org", "NoAnswerFromHost"),
    # --- BadConnection ---------------------------------------------------------------------------
    (
        "451 4.4.1 connect to mx.example.net[203.0.113.5]:25: Connection refused",
        "BadConnection",
    ),
    (
        "421 4.4.2 lost connection with mx.example.net[203.0.113.5] while sending RCPT TO",
        "BadConnection",
    ),
    ("451 Connection reset by peer", "BadConnection"),
    (
        '451 4.4.0 Primary target IP address responded with: "421 4.4.0 Unable to connect." '
        "Attempted failover to alternate host, but that did not succeed.",
        "BadConnection",
    ),
    ("451 4.4.0 TLS negotiation failed with error SocketError", "BadConnection"),
    ("421 Unable to establish connection to mx.example.org", "BadConnection"),
    ("421 4.4.2 Connection dropped during DATA", "BadConnection"),
    ("451 4.4.2 reply: read error from mx.example.com.", "BadConnection"),
    ("451 4.4.2 Broken pipe while sending message body", "BadConnection"),
    ("454 4.7.5 Server certificate not verified", "BadConnection"),
    (
        "The recipient server did not accept our requests to connect. [mx.example.net. "
        "203.0.113.5: Connection refused]",
        "BadConnection",
    ),
    # --- DNSFailure ------------------------------------------------------------------------------
    (
        "451 4.4.3 Host or domain name not found. Name service error for name=example.net "
        "type=MX: Host not found, try again",
        "DNSFailure",
    ),
    ("451 Temporary DNS failure looking up example.net", "DNSFailure"),
    ("451 4.4.3 DNS lookup failed for example.net: SERVFAIL", "DNSFailure"),
    (
        "451 4.4.312 DNS query failed. The error was: DNS query failed with error: ErrorRetry",
        "DNSFailure",
    ),
    ("451 host lookup did not complete", "DNSFailure"),
    (
        "451 KumoMTA internal: failed to resolve MX for example.net: no record found",
        "DNSFailure",
    ),
    ("451 4.4.3 DNS Error: DNS server returned answer with no data", "DNSFailure"),
    ("451 4.4.3 Directory server failure", "DNSFailure"),
    # --- BadDomain -------------------------------------------------------------------------------
    (
        "550 5.1.2 <joe@exmaple.com>: Recipient address rejected: Domain not found",
        "BadDomain",
    ),
    ("556 5.1.10 Recipient address has null MX", "BadDomain"),
    ("550 5.1.2 Host unknown (Name server: example.invalid: host not found)", "BadDomain"),
    ("553 5.1.2 The recipient domain could not be found", "BadDomain"),
    ("554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain", "BadDomain"),
    ("521 5.3.2 This host does not receive mail", "BadDomain"),
    ("550 5.1.2 Sorry, I couldn't find any host named example.invalid.", "BadDomain"),
    ("550 No such domain at this location", "BadDomain"),
    ("550 5.1.2 Bad destination system address", "BadDomain"),
    # --- RoutingErrors ---------------------------------------------------------------------------
    ("554 5.4.6 Hop count exceeded - possible mail loop", "RoutingErrors"),
    ("550 Unrouteable address", "RoutingErrors"),
    ("554 5.4.6 mail for example.com loops back to myself", "RoutingErrors"),
    ("550 5.4.4 Unable to route: no mail hosts for domain", "RoutingErrors"),
    ("554 5.4.0 Too many hops 26 (25 max)", "RoutingErrors"),
    ("554 5.4.6 Routing loop detected", "RoutingErrors"),
    # --- RelayDenied -----------------------------------------------------------------------------
    ("554 5.7.1 <bea@example.net>: Relay access denied", "RelayDenied"),
    ("550 5.7.1 Unable to relay for bea@example.net", "RelayDenied"),
    ("550 5.7.64 TenantAttribution; Relay Access Denied", "RelayDenied"),
    ("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", "RelayDenied"),
    ("550 relay not permitted", "RelayDenied"),
    ("554 5.7.1 Relaying denied. IP name possibly forged", "RelayDenied"),
    ("550 5.7.1 We do not relay non-local mail", "RelayDenied"),
    # --- SpamBlock -------------------------------------------------------------------------------
    (
        "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
        "SpamBlock",
    ),
    (
        "550 5.7.1 Unfortunately, messages from [203.0.113.9] weren't sent. Please contact your "
        "Internet service provider since part of their network is on our block list (S3140).",
        "SpamBlock",
    ),
    (
        "421 4.7.0 This message is suspicious due to the very low reputation of the sending IP "
        "address",
        "SpamBlock",
    ),
    (
        "421 4.7.0 [TSS04] Messages from 203.0.113.9 temporarily deferred due to unexpected "
        "volume or user complaints",
        "SpamBlock",
    ),
    (
        "554 imta11.comcast.example 203.0.113.9 found on one or more DNSBLs, see "
        "http://postmaster.comcast.net/smtp-error-codes.php#BL000010",
        "SpamBlock",
    ),
    (
        "554 Service unavailable; Client host [203.0.113.9] blocked using Barracuda Reputation",
        "SpamBlock",
    ),
    ("554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=203.0.113.9", "SpamBlock"),
    (
        "554 Your access to this mail system has been rejected due to the sending MTA's poor "
        "reputation",
        "SpamBlock",
    ),
    ("550 5.7.1 Your IP address 203.0.113.9 is listed on SpamCop", "SpamBlock"),
    ("554 5.7.1 Rejected: 203.0.113.9 listed at bl.spamcop.net", "SpamBlock"),
    ("550 5.7.1 Mail from dynamic IP addresses is not accepted", "SpamBlock"),
    ("550 5.7.606 Access denied, banned sending IP [203.0.113.9]", "SpamBlock"),
    (
        "550 5.7.1 Mail from 203.0.113.9 refused, see https://ers.trendmicro.com/reputations",
        "SpamBlock",
    ),
    ("550 Local CT IP Reputation - (reject)", "SpamBlock"),
    ("554 5.7.1 Sending IP 203.0.113.9 is blacklisted", "SpamBlock"),
    # --- SpamContent -----------------------------------------------------------------------------
    (
        "550 5.7.1 Our system has detected that this message is likely unsolicited mail.",
        "SpamContent",
    ),
    ("550 5.7.350 Remote server returned message detected as spam", "SpamContent"),
    ("554 5.7.1 Message rejected as spam by Content Filtering.", "SpamContent"),
    ("550 5.7.1 Message content rejected, UBE, id=28391-07", "SpamContent"),
    ("550 5.7.1 Spam message rejected; score=9.2", "SpamContent"),
    ("554 5.7.1 Message rejected under suspicion of SPAM; https://ya.cc/1IrBc", "SpamContent"),
    ("554 5.7.1 Message blocked due to spam content in the message", "SpamContent"),
    ("550 5.7.1 URL in message body is blacklisted", "SpamContent"),
    ("550 5.7.1 Your message looks like spam", "SpamContent"),
    ("550 Mail content denied. http://service.mail.qq.com/cgi-bin/help?subtype=1", "SpamContent"),
    ("554 DT:SPM 163mx12, message is identified as spam", "SpamContent"),
    ("550 5.7.1 This message was classified as SPAM and may not be delivered", "SpamContent"),
    # --- SpamRelated -----------------------------------------------------------------------------
    ("550 5.7.1 Blocked by spam protection", "SpamRelated"),
    ("554 5.7.1 Anti-spam system refused the message", "SpamRelated"),
    ("550 Junk mail rejected", "SpamRelated"),
    ("550 Suspected spam", "SpamRelated"),
    # --- VirusRelated ----------------------------------------------------------------------------
    ("554 5.7.0 Virus found in message: Win.Trojan.Agent-12345", "VirusRelated"),
    ("550 5.7.1 Message rejected: infected with Eicar-Test-Signature", "VirusRelated"),
    ("554 5.7.0 Reject, id=04213-09 - INFECTED: Eicar-Signature", "VirusRelated"),
    ("550 5.7.1 Message contains a virus", "VirusRelated"),
    ("550 5.7.1 Message rejected due to malicious content detection", "VirusRelated"),
    ("554 5.6.1 Malware detected in attachment", "VirusRelated"),
    # --- ProhibitedAttachment --------------------------------------------------------------------
    ("554 5.7.1 Attachment type not allowed: invoice.exe", "ProhibitedAttachment"),
    ("550 5.7.1 Message contains a forbidden file type (.scr)", "ProhibitedAttachment"),
    (
        "554 5.7.0 Reject, id=11812-02 - BANNED: P=p003,L=1,M=application/x-msdownload,N=setup.exe",
        "ProhibitedAttachment",
    ),
    ("550 5.7.1 Attachment blocked by policy", "ProhibitedAttachment"),
    ("550 Message rejected: dangerous attachment detected", "ProhibitedAttachment"),
    ("554 5.6.1 File extension .js is not permitted", "ProhibitedAttachment"),
    # --- ContentRelated --------------------------------------------------------------------------
    ("554 5.6.0 Message contains invalid header", "ContentRelated"),
    ("554 5.6.0 Mail message is malformed. Not accepted.", "ContentRelated"),
    ("550 5.7.1 Message rejected: bare LF characters are not allowed", "ContentRelated"),
    ("550 5.7.512 Message must be RFC 5322 section 3.6.2 compliant", "ContentRelated"),
    ("554 5.6.0 Duplicate Message-ID header", "ContentRelated"),
    ("552 5.6.0 Headers too large", "ContentRelated"),
    ("550 5.6.0 Line too long (see RFC 5321 section 4.5.3.1.6)", "ContentRelated"),
    ("554 5.6.3 Conversion required but not supported", "ContentRelated"),
    ("550 5.7.1 Message has no Date header", "ContentRelated"),
    # --- PolicyRelated ---------------------------------------------------------------------------
    (
        "550 5.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.9]",
        "PolicyRelated",
    ),
    ("554 5.7.1 Message refused by recipient's policy", "PolicyRelated"),
    ("550 5.7.1 Delivery not authorized, message refused", "PolicyRelated"),
    (
        "550 5.7.1 The user or domain that you are sending to (or from) has a policy that "
        "prohibited the mail that you sent.",
        "PolicyRelated",
    ),
    ("530 5.7.0 Must issue a STARTTLS command first", "PolicyRelated"),
    (
        "550 Envelope blocked - User Entry - https://community.mimecast.com/docs/DOC-1369#550",
        "PolicyRelated",
    ),
    ("554 5.7.1 [HM08] Message rejected due to local policy.", "PolicyRelated"),
    ("550 5.7.1 Sender is on the recipient's blocked senders list", "PolicyRelated"),
    ("550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized", "PolicyRelated"),
    ("550 5.7.1 You are not allowed to post to this mailing list", "PolicyRelated"),
    ("554 IP=203.0.113.9 - invalid DNS PTR resource record", "PolicyRelated"),
    ("550 5.7.1 HELO/EHLO hostname is not fully qualified", "PolicyRelated"),
    ("550 5.7.1 Recipient address rejected: Access denied", "PolicyRelated"),
    ("554 5.7.1 Email rejected due to security policies", "PolicyRelated"),
    ("550 5.7.1 Message rejected by the content filter", "PolicyRelated"),
    # --- AuthenticationFailed --------------------------------------------------------------------
    (
        "550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's "
        "DMARC policy.",
        "AuthenticationFailed",
    ),
    ("550 5.7.23 SPF validation failed", "AuthenticationFailed"),
    (
        "550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification",
        "AuthenticationFailed",
    ),
    ("535 5.7.8 Error: authentication failed: authentication failure", "AuthenticationFailed"),
    ("530 5.7.0 Authentication required", "AuthenticationFailed"),
    (
        "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo "
        "requires all senders to authenticate with either SPF or DKIM.",
        "AuthenticationFailed",
    ),
    ("550 5.7.20 No passing DKIM signature found", "AuthenticationFailed"),
    ("550 5.7.1 Email rejected per DMARC policy for example.com", "AuthenticationFailed"),
    ("550 Message not accepted due to domain's DMARC policy", "AuthenticationFailed"),
    (
        "550 5.7.1 SPF fail: example.com does not designate 203.0.113.9 as permitted sender",
        "AuthenticationFailed",
    ),
    # --- InvalidSender ---------------------------------------------------------------------------
    (
        "553 5.1.8 <bounce@nodomain.example>... Domain of sender address "
        "bounce@nodomain.example does not exist",
        "InvalidSender",
    ),
    (
        "550 5.1.0 <bounce@example.com>: Sender address rejected: User unknown in local "
        "recipient table",
        "InvalidSender",
    ),
    ("450 4.1.8 <bounce@example.com>: Sender address rejected: Domain not found", "InvalidSender"),
    ("550 Sender verify failed", "InvalidSender"),
    ("550 5.1.7 Invalid address syntax in MAIL FROM", "InvalidSender"),
    ("501 5.1.7 Bad sender address syntax", "InvalidSender"),
    ("550 5.7.1 Sender domain has no MX or A record", "InvalidSender"),
    ("553 5.1.8 Sender domain does not exist", "InvalidSender"),
    # --- BadConfiguration ------------------------------------------------------------------------
    ("554 5.3.0 Unknown mailer error 75", "BadConfiguration"),
    ("451 4.3.0 Local configuration error", "BadConfiguration"),
    ("550 5.0.0 procmail: Error while writing to mailbox", "BadConfiguration"),
    ("451 4.3.5 System incorrectly configured", "BadConfiguration"),
    ("451 4.3.0 Temporary failure in LDAP lookup", "BadConfiguration"),
    ("550 5.3.0 Mailbox delivery failed: permission denied", "BadConfiguration"),
    ("550 maildrop: Unable to create a dot-lock", "BadConfiguration"),
    # --- ProtocolErrors --------------------------------------------------------------------------
    ("503 5.5.1 Error: need MAIL command", "ProtocolErrors"),
    ("500 5.5.2 Syntax error, command unrecognized", "ProtocolErrors"),
    ("501 5.5.4 Invalid argument", "ProtocolErrors"),
    ("555 5.5.4 Unsupported option: SMTPUTF8", "ProtocolErrors"),
    ("503 5.5.0 Bad sequence of commands", "ProtocolErrors"),
    ("550 5.6.7 Non-ASCII addresses not permitted for that sender/recipient", "ProtocolErrors"),
    ("502 5.5.1 Command not implemented", "ProtocolErrors"),
    ("554 5.5.1 Error: no valid recipients", "ProtocolErrors"),
    # --- AutoReply -------------------------------------------------------------------------------
    (
        "Thank you for your email. I am out of the office until 12 March with no access to email.",
        "AutoReply",
    ),
    ("Automatic reply: I'm on annual leave until Monday", "AutoReply"),
    ("I am currently away and will reply to your message when I return.", "AutoReply"),
    (
        "This is an auto-response: your message has been received and will be answered shortly.",
        "AutoReply",
    ),
    ("Je suis absent du bureau jusqu'au 5 mai.", "AutoReply"),
    ("Ich bin bis zum 3. Juni nicht im Büro.", "AutoReply"),
    ("Estaré fuera de la oficina hasta el lunes.", "AutoReply"),
    # --- ChallengeResponse -----------------------------------------------------------------------
    (
        "Please verify that you are a real person by clicking the link below; your message "
        "will be delivered once confirmed.",
        "ChallengeResponse",
    ),
    (
        "I use a challenge-response spam filter. Please reply to confirm your message.",
        "ChallengeResponse",
    ),
    (
        "Your message is being held: please click the link to add yourself to my approved "
        "senders list.",
        "ChallengeResponse",
    ),
    ("Boxbe: the recipient asks you to confirm that you are not a robot.", "ChallengeResponse"),
    # --- Subscribe / Unsubscribe -----------------------------------------------------------------
    ("Subscribe me", "Subscribe"),
    ("SUBSCRIBE", "Subscribe"),
    ("Please unsubscribe me", "Unsubscribe"),
    ("UNSUBSCRIBE", "Unsubscribe"),
]

# A second batch, written after the first table's misses were fixed and run once before any rule
# change: 76 of 78 right on that first run. The two misses ("mailbox has reached its size
# limit", "does not relay mail for you") led to generic rules.
UNSEEN_SECOND_BATCH: list[tuple[str, str]] = [
    (
        "550 5.1.1 <lea@example.de>: Recipient address rejected: undeliverable address: User "
        "unknown in local recipient table",
        "InvalidRecipient",
    ),
    ("550 5.1.1 Mailbox does not exist", "InvalidRecipient"),
    ("550 5.1.1 The recipient does not exist on this server", "InvalidRecipient"),
    ("550 5.1.1 <max@example.com>: Recipient address rejected: unknown user", "InvalidRecipient"),
    ("550 Invalid recipient <max@example.com>", "InvalidRecipient"),
    ("550 5.5.0 <max@example.com>... No such user here", "InvalidRecipient"),
    ("550 Adresse inconnue", "InvalidRecipient"),
    ("550 5.1.1 Recipient address is unknown in this domain", "InvalidRecipient"),
    ("550 5.1.1 This mailbox is no longer in use", "InactiveMailbox"),
    ("550 5.2.1 Mailbox temporarily disabled", "InactiveMailbox"),
    ("554 5.2.1 Recipient account is suspended", "InactiveMailbox"),
    (
        "550 Your message could not be delivered because the recipient's account is frozen",
        "InactiveMailbox",
    ),
    ("452 4.2.2 Mailbox over quota", "QuotaIssues"),
    ("552 5.2.2 Storage quota of the recipient has been exceeded", "QuotaIssues"),
    ("552 Message rejected: recipient's mailbox has reached its size limit", "QuotaIssues"),
    ("552 5.3.4 Message too large, maximum allowed is 25 MB", "QuotaIssues"),
    ("452 4.2.2 Recipient's mailbox has insufficient space", "QuotaIssues"),
    ("452 4.5.3 Too many recipients in this transaction", "TooManyRecipients"),
    ("550 5.5.3 Number of recipients exceeds the limit of 100", "TooManyRecipients"),
    ("451 4.7.1 Greylisting in action, please come back later", "TransientFailure"),
    ("421 4.7.0 Temporarily rate limited, try again in 30 minutes", "TransientFailure"),
    ("450 4.7.1 Too many messages from your IP in the last hour", "TransientFailure"),
    ("421 4.3.2 Server is shutting down, please try again later", "TransientFailure"),
    ("451 4.3.0 Mail server temporarily unavailable", "TransientFailure"),
    ("421 Service temporarily unavailable, please retry", "TransientFailure"),
    ("550 5.4.7 Delivery expired (message too old)", "MessageExpired"),
    ("554 5.4.7 Message has been in the queue for more than 5 days", "MessageExpired"),
    ("550 Maximum delivery time exceeded, giving up", "MessageExpired"),
    ("451 4.4.7 Message delivery time exceeded", "MessageExpired"),
    ("451 4.4.2 Timed out while waiting for the server greeting", "NoAnswerFromHost"),
    ("421 4.4.1 Connection attempt timed out", "NoAnswerFromHost"),
    ("451 4.4.1 Destination host did not respond", "NoAnswerFromHost"),
    ("451 4.4.1 Host unreachable", "NoAnswerFromHost"),
    ("451 4.4.2 Remote server closed the connection unexpectedly", "BadConnection"),
    ("421 4.4.2 Connection was reset during the SMTP session", "BadConnection"),
    ("454 4.7.0 TLS handshake failed: no shared cipher", "BadConnection"),
    ("451 4.4.1 Could not connect to mail exchanger for example.org", "BadConnection"),
    ("451 4.4.3 Temporary DNS error while resolving example.org", "DNSFailure"),
    ("451 4.4.3 Name server timeout resolving MX for example.org", "DNSFailure"),
    ("451 4.4.3 Unable to resolve MX host example.org", "DNSFailure"),
    ("550 5.1.2 Domain example.invalid does not exist", "BadDomain"),
    ("550 5.1.2 Recipient domain has no mail server", "BadDomain"),
    ("554 5.1.2 Invalid domain name in recipient address", "BadDomain"),
    ("554 5.4.6 Mail loop detected", "RoutingErrors"),
    ("550 5.4.4 No route found to the recipient domain", "RoutingErrors"),
    ("550 5.7.1 Relaying not allowed for this destination", "RelayDenied"),
    ("554 5.7.1 This server does not relay mail for you", "RelayDenied"),
    ("554 5.7.1 Your IP 203.0.113.9 is on the Spamhaus SBL", "SpamBlock"),
    ("550 5.7.1 Sender IP has a poor reputation", "SpamBlock"),
    ("554 5.7.1 Connection refused: 203.0.113.9 is listed in b.barracudacentral.org", "SpamBlock"),
    ("421 4.7.0 Your IP is blocked due to spam complaints", "SpamBlock"),
    ("550 5.7.1 Message identified as spam by our filter", "SpamContent"),
    ("554 5.7.1 Content looks like spam (score 15.3)", "SpamContent"),
    ("550 5.7.1 Message contains a blacklisted domain in the body", "SpamContent"),
    ("554 5.7.1 Virus detected: Trojan.Generic", "VirusRelated"),
    ("550 5.7.1 Infected attachment rejected", "VirusRelated"),
    ("550 5.7.1 Executable attachments are not accepted", "ProhibitedAttachment"),
    ("552 5.7.0 Attachment with extension .bat is blocked", "ProhibitedAttachment"),
    ("554 5.6.0 Malformed MIME message", "ContentRelated"),
    ("550 5.6.0 Message headers contain invalid characters", "ContentRelated"),
    ("550 5.7.1 Message rejected by local policy", "PolicyRelated"),
    ("550 5.7.1 Your domain is on the recipient's deny list", "PolicyRelated"),
    ("554 5.7.1 Client host rejected: PTR record does not match hostname", "PolicyRelated"),
    ("550 5.7.1 Only members may post to this list", "PolicyRelated"),
    ("550 5.7.26 DMARC policy of the sender domain requires rejection", "AuthenticationFailed"),
    ("550 5.7.1 SPF check failed for example.com", "AuthenticationFailed"),
    ("550 5.7.1 DKIM signature is invalid", "AuthenticationFailed"),
    ("535 5.7.8 Authentication credentials invalid", "AuthenticationFailed"),
    ("553 5.1.8 Sender address domain does not exist", "InvalidSender"),
    ("550 5.1.7 Invalid sender address", "InvalidSender"),
    ("550 Envelope sender rejected: address unverifiable", "InvalidSender"),
    ("554 5.3.0 Delivery program exited with status 75", "BadConfiguration"),
    ("451 4.3.5 Server configuration error", "BadConfiguration"),
    ("503 5.5.1 RCPT TO required before DATA", "ProtocolErrors"),
    ("501 5.5.2 Syntax error in MAIL FROM parameters", "ProtocolErrors"),
    ("I'm out of the office this week and will answer when I'm back.", "AutoReply"),
    ("Vacation notice: I will be away until 2 September.", "AutoReply"),
    (
        "To deliver your message, please confirm you are a human by visiting the link below.",
        "ChallengeResponse",
    ),
]
UNSEEN += UNSEEN_SECOND_BATCH


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.from_files(shipped_rule_files())


def test_table_covers_every_label_the_rules_produce() -> None:
    produced = set(load_rules(shipped_rule_files()).labels)
    covered = {label for _, label in UNSEEN}
    assert produced <= covered, f"no unseen line for {sorted(produced - covered)}"
    assert len(UNSEEN) >= 150
    assert len({line for line, _ in UNSEEN}) == len(UNSEEN), "duplicate lines"


@pytest.mark.parametrize(("line", "expected"), UNSEEN, ids=[c[0][:60] for c in UNSEEN])
def test_unseen_line(classifier: Classifier, line: str, expected: str) -> None:
    got = classifier.classify(line)
    where = f"{got.rule.file}#{got.rule.index} {got.rule.pattern!r}" if got.rule else "no rule"
    assert got.label == expected, f"{line!r}: {got.label} via {where}"
