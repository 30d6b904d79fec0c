"""The words that give a message away, in the six languages leadloop writes in (en, el, de, es, pl, hu)."""

import re


def _any(*phrases: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{phrase})" for phrase in phrases), re.IGNORECASE)


#: Subjects mail clients give their automatic replies (Outlook, Gmail, Exchange) in the six languages.
AUTO_SUBJECT = _any(
    r"^(automatic reply|auto(matic)?[- ]?reply|auto[- ]?response|out of (the )?office|vacation)\b",
    r"^(automatische antwort|abwesenheitsnotiz|abwesend)\b",
    r"^(respuesta autom[aá]tica|fuera de la oficina)\b",
    r"^(automatyczna odpowied[zź]|odpowied[zź] automatyczna|poza biurem)\b",
    r"^(automatikus v[aá]lasz|h[aá]zon k[ií]v[uü]l)\b",
    r"^(αυτόματη απάντηση|εκτός γραφείου)",
)
#: Out-of-office wording in the body when headers say nothing.
OUT_OF_OFFICE = _any(
    r"\bout of (the )?office\b",
    r"\b(i am|i'm|i will be) (currently )?(away|on (annual |parental )?leave|on vacation|on holiday|travel+ing)",
    r"\blimited access to (my )?e-?mail\b",
    r"\bthis is an automatic (reply|response)\b",
    r"\babwesenheitsnotiz\b",
    r"\b(ich bin|bin ich) (bis|vom|ab|derzeit|zurzeit|momentan|leider)?\b.{0,40}"
    r"\b(nicht im b[üu]ro|abwesend|im urlaub)",
    r"\bnicht im b[üu]ro\b",
    r"\bfuera de (la )?oficina\b",
    r"\b(estoy|estar[eé]) (de vacaciones|ausente|fuera)\b",
    r"\bpoza biurem\b",
    r"\b(jestem|b[eę]d[eę]) (na urlopie|nieobecn[ya])",
    r"\bh[aá]zon k[ií]v[uü]l\b",
    r"\b(szabads[aá]gon|irod[aá]n k[ií]v[uü]l) vagyok\b",
    r"εκτός γραφείου",
    r"(είμαι|θα είμαι) (εκτός|σε άδεια|σε διακοπές)",
)
#: "has left the company": the person is gone, the address may live on.
LEFT_COMPANY = _any(
    r"\b(has|have) left (the company|the organi[sz]ation|[A-Z][\w&.-]+)\b",
    r"\bno longer (works?|employed|with)\b",
    r"\bis no longer (at|with|part of)\b",
    r"\b(hat|habe) (das unternehmen|die firma|unser unternehmen) verlassen\b",
    r"\bnicht mehr (im unternehmen|bei uns|f[üu]r .{1,40} t[äa]tig)\b",
    r"\bya no (trabaja|forma parte|est[aá] en)\b",
    r"\bha dejado (la empresa|la compa[nñ][ií]a)\b",
    r"\bnie pracuje ju[zż]\b",
    r"\bju[zż] nie pracuje\b",
    r"\bodesz[lł]a? z firmy\b",
    r"\bm[aá]r nem dolgozik\b",
    r"\bkil[eé]pett (a c[eé]gt[oő]l|c[eé]g[uü]nkt[oő]l)\b",
    r"δεν εργάζεται (πλέον|πια)",
    r"έχει αποχωρήσει",
)
#: Where the left-company message sends the reader.
CONTACT_HINT = _any(
    r"\b(please )?(contact|reach out to|write to|e-?mail)\b",
    r"\b(wenden sie sich (bitte )?an|kontaktieren sie)\b",
    r"\b(contacte|contactar|escriba) (con|a)\b",
    r"\b(prosz[eę] (o )?kontakt|skontaktuj|kontakt z)\b",
    r"\b(keresse|forduljon|[ií]rjon)\b",
    r"(επικοινωνήστε|απευθυνθείτε)",
)
#: Challenge-response systems: the sender must prove a human sent the message.
CHALLENGE = _any(
    r"\bverify (that )?you are (a )?human\b",
    r"\b(please|kindly) (verify|confirm) (your|that you|your e-?mail)",
    r"\bchallenge[- ]response\b",
    r"\b(boxbe|spamarrest|spam arrest|mailblocks|sorbs protect)\b",
    r"\bapprove (your|this) (message|e-?mail) (for|to be) deliver",
    r"\bbest[äa]tigen sie,? dass sie ein mensch sind\b",
    r"\bverifique que (es|usted es) (una persona|humano)\b",
    r"\bpotwierd[zź],? [zż]e jeste[sś] cz[lł]owiekiem\b",
    r"\bigazolja,? hogy (ön )?ember\b",
    r"επιβεβαιώστε ότι είστε άνθρωπος",
)
#: A reply asking to stop: unsubscribe, remove me, take me off the list.
UNSUBSCRIBE = _any(
    r"\bunsubscribe\b",
    r"\bremove me\b",
    r"\b(take|get) me off\b",
    r"\bremove (my (e-?mail|address|name)|us)\b",
    r"\b(stop|quit) (e-?mailing|sending|contacting|writing to) (me|us)\b",
    r"\bopt(ed)?[- ]out\b",
    r"\b(no|don't|do not) (send|e-?mail) (me|us) (any ?more|again)\b",
    r"\babmelden\b",
    r"\bmelden sie (mich|uns) (bitte )?(?:(?:von|vom|aus)\b[^.!?\n]{1,40}?\s)?ab\b",
    r"\bmelde (mich|uns) (bitte )?(?:(?:von|vom|aus)\b[^.!?\n]{1,40}?\s)?ab\b",
    r"\babbestellen\b",
    r"\b(entfernen sie|l[öo]schen sie) (mich|meine (e-?mail|adresse|daten))\b",
    r"\bkeine (weiteren )?(e-?mails|nachrichten) mehr\b",
    r"\bdar(me|se)? de baja\b",
    r"\bb[aá]jame\b",
    r"\b(elim[ií]n(en|eme)|quit(en|adme)|borr(en|adme))\b.{0,30}\b(lista|correo)",
    r"\bno (me )?(env[ií]en|manden) m[aá]s\b",
    r"\bwypisz\b",
    r"\bwypisa[cć]\b",
    r"\bprosz[eę] (o )?(usuni[eę]cie|wypisanie)\b",
    r"\busu[nń] (mnie|m[oó]j (adres|e-?mail))\b",
    r"\bleiratkoz",
    r"\bt[öo]r[öo]lj(enek|[eé]k)\b",
    r"\bne k[üu]ldjenek (t[öo]bb|tov[aá]bbi)\b",
    r"διαγραφ[ήη]",
    r"διαγράψτε με",
    r"απεγγραφ[ήη]",
    r"μη(ν)? μου (στέλνετε|ξαναστείλετε)",
)
#: A request turned around: "don't remove me", "bitte nicht abmelden", "no me den de baja".
UNSUBSCRIBE_NEGATED = _any(
    r"\b(don'?t|do not|please don'?t|never) (unsubscribe|remove|take me off|opt me out)\b",
    r"\bnot (to )?(unsubscribe|remove)\b",
    r"\bnicht (ab(melden|bestellen)|entfernen|l[öo]schen)\b",
    r"\bmelden sie (mich|uns) (bitte )?nicht ab\b",
    r"\bno (me )?(den|des|d[eé]is) de baja\b",
    r"\bno (me )?(elimin|borr|quit)",
    r"\bnie (wypisuj|usuwaj|wypisywa[cć])",
    r"\bne (iratkoz|t[öo]r[öo]lj)",
    r"\bne ([ií]rjanak|iratkoztassanak) ki\b",
    r"μη(ν)? (με )?(διαγράψετε|διαγράφετε)",
)
#: Words that turn a request around when they come shortly before it, in the six languages: "I don't want to
#: unsubscribe", "no need to remove me", "ich möchte mich nicht abmelden", "no quiero darme de baja", "nie chcę się
#: wypisać", "nem szeretnék leiratkozni", "δεν θέλω διαγραφή". A plain "no" is Spanish's negation, but not before the
#: words that make it an English "no more", "no interest", "no thanks" (which come before real requests).
NEGATION = _any(
    r"\b(not|never|nor|neither|cannot|dont|wont|didnt|cant|wouldnt|shouldnt|isnt)\b",
    r"n['’]t\b",
    r"\bno (need|reason|wish|intention|plans?|desire)\b",
    r"\bwhy (would|should|do|did|on earth would) (i|we)\b",
    r"\b(nicht|nie|niemals|keineswegs|kein|keine|keinen|keinesfalls)\b",
    r"\b(no|nunca|jam[aá]s|tampoco|ni)\b(?!\s+(more|longer|m[aá]s|interest|thanks?|time|use|need)\b)",
    r"\b(nigdy|ani)\b",
    r"\b(nem|ne|sem|soha|sose|nincs|semmi)\b",
    r"(?<!\w)(δεν|δε|μην|μη|ούτε|όχι|ποτέ|ποτε)(?!\w)",
)
#: Words that open a new clause, so a negation before them does not reach a request after them: "I never signed
#: up for this so unsubscribe me", "Ich will das nicht, bitte abmelden".
CLAUSE_WORD = _any(
    r"^(so|and|but|then|therefore|please|pls|just|instead)$",
    r"^(und|aber|also|bitte|sondern|deshalb|daher)$",
    r"^(y|pero|entonces|favor|as[ií]|sino)$",
    r"^(ale|wi[eę]c|prosz[eę]|dlatego|tylko)$",
    r"^(és|ez[eé]rt|k[eé]rem|k[eé]rj[uü]k|ink[aá]bb)$",  # not "es", which is Spanish "is"
    r"^(και|αλλά|οπότε|παρακαλώ|γι'αυτό)$",
)
#: A question that asks why: "Why would I unsubscribe?" is no request, whatever its words.
WHY = _any(
    r"\b(why|warum|wieso|weshalb|wozu|dlaczego|czemu|mi[eé]rt|minek)\b",
    r"\b(por qu[eé]|para qu[eé]|po co)\b",
    r"(?<!\w)(γιατί|γιατι|για ποιο λόγο)(?!\w)",
)
#: The unsubscribe link or button named as a thing ("the unsubscribe link looks broken", "Link zum Abmelden",
#: "leiratkozási link", "σύνδεσμος διαγραφής"): a mention, not a request.
LINK_WORD = _any(
    r"^(https?|www|mailto)$",  # leadloop's own footer, "Unsubscribe: https://…", quoted without markers
    r"^(click\w*|klick\w*|clic\w*|haga|klikn\w*|kattint\w*|πατήστε|κάντε|κλικ)$",
    r"^(links?|button|page|url|footer|option|form|process)$",
    r"^(knopf|schaltfl[äa]che|seite|formular)$",
    r"^(enlaces?|v[ií]nculos?|bot[oó]n|p[aá]gina)$",
    r"^(linku?|odno[sś]nik\w*|przycisk\w*|stron\w*)$",
    r"^(linkj?\w*|hivatkoz[aá]s\w*|gomb\w*|oldal\w*)$",
    r"^(σύνδεσμ\w*|συνδέσμ\w*|κουμπί|σελίδα)$",
)
#: English words before "unsubscribe" that make it a noun ("the unsubscribe doesn't work"), not a request.
NOUN_DETERMINER = _any(r"^(the|your|this|that|their|an)$")
#: Lines that open a quoted original in the six languages; everything from one of them on is the quote.
QUOTE_HEADER = _any(
    r"^on\b.{0,200}\bwrote:\s*$",
    r"^am\b.{0,200}\bschrieb\b.{0,120}:\s*$",
    r"^el\b.{0,200}\bescribi[oó]:\s*$",
    r"^w dniu\b.{0,200}\b(pisze|napisa[lł](\(a\)|a)?):\s*$",
    r"^.{0,200}\b[ií]rta\b.{0,120}:\s*$",
    r"^στις\b.{0,200}\bέγραψε:\s*$",
    r"^-{2,}\s*(original message|urspr[üu]ngliche nachricht|mensaje original|oryginalna wiadomo[sś][cć]|"
    r"eredeti [üu]zenet|αρχικό μήνυμα)\s*-{2,}\s*$",
    r"^_{10,}\s*$",
)
#: Outlook's quoted-header block: a "From:" line followed within a few lines by "Sent:" (or its translations).
OUTLOOK_FROM = _any(r"^\*?(from|von|de|od|feladó|από):\*?\s")
OUTLOOK_SENT = _any(r"^\*?(sent|date|gesendet|enviado|fecha|wysłano|data|elküldve|dátum|στάλθηκε|ημερομηνία):\*?\s")
#: Words near a stated return date: "back on", "until", "bis", "hasta", "do", "-ig", "έως".
RETURN_CUE = _any(
    r"\b(until|till|back|return(ing)?|returns|from)\b",
    r"\b(bis|zur[üu]ck|wieder|ab)\b",
    r"\b(hasta|regres\w*|vuelv\w*|volver\w*|vuelta|a partir)\b",
    r"\b(do|powr[oó]t\w*|wracam|od)\b",
    r"\w+-?ig\b",
    r"\b(vissza\w*)\b",
    r"(έως|μέχρι|επιστρ\w*|από)",
)
