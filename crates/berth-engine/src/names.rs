//! Random container names in Docker's `adjective_surname` style.

const LEFT: &[&str] = &[
    "admiring", "adoring", "affectionate", "amazing", "awesome", "blissful", "bold", "brave", "charming",
    "clever", "compassionate", "confident", "cool", "dazzling", "determined", "eager", "ecstatic",
    "elastic", "elegant", "eloquent", "epic", "exciting", "fervent", "festive", "focused", "friendly",
    "frosty", "funny", "gallant", "gifted", "goofy", "gracious", "happy", "hopeful", "hungry",
    "inspiring", "intelligent", "jolly", "jovial", "keen", "kind", "laughing", "loving", "lucid",
    "magical", "modest", "musing", "mystifying", "nice", "nifty", "nostalgic", "objective", "optimistic",
    "peaceful", "pensive", "practical", "priceless", "quirky", "quizzical", "relaxed", "reverent",
    "romantic", "serene", "sharp", "silly", "sleepy", "stoic", "strange", "sweet", "tender", "thirsty",
    "trusting", "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly", "wonderful",
    "xenodochial", "youthful", "zealous", "zen",
];
const RIGHT: &[&str] = &[
    "agnesi", "albattani", "allen", "archimedes", "babbage", "banach", "bardeen", "bartik", "bell",
    "bhabha", "blackwell", "bohr", "booth", "brahmagupta", "brown", "carson", "cerf", "chandrasekhar",
    "chaplygin", "curie", "darwin", "diffie", "dijkstra", "einstein", "elion", "euclid", "euler",
    "fermat", "fermi", "feynman", "franklin", "galileo", "gauss", "goldberg", "goodall", "hamilton",
    "hawking", "heisenberg", "hodgkin", "hopper", "hypatia", "jang", "jennings", "johnson", "kalam",
    "kepler", "khorana", "knuth", "kowalevski", "lalande", "lamarr", "leakey", "lovelace", "lumiere",
    "mayer", "mcclintock", "meitner", "mendel", "merkle", "montalcini", "morse", "napier", "newton",
    "nobel", "noether", "pascal", "pasteur", "payne", "perlman", "pike", "poincare", "ptolemy", "raman",
    "ritchie", "rosalind", "sammet", "shannon", "shaw", "sinoussi", "stallman", "swartz", "tesla",
    "thompson", "torvalds", "turing", "wilson", "wozniak", "wright", "yalow", "yonath",
];

pub fn random_name() -> String {
    let l = LEFT[rand::random_range(0..LEFT.len())];
    let r = RIGHT[rand::random_range(0..RIGHT.len())];
    format!("{l}_{r}")
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b.len() <= 253
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}
