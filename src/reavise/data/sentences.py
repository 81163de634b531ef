"""Sentence source for the synthetic corpus: a hand-written phonetically varied list plus
combinatorial templates, so that hours of corpus do not repeat.

The fixed sentences are original, written in the style of the Harvard sentences (short,
everyday, many different consonant clusters and vowels). The generator fills templates from
word lists; with the list sizes below it has well over 10^9 distinct sentences.
"""

from __future__ import annotations

import numpy as np

SENTENCES: tuple[str, ...] = (
    "The brown dog chased a leaf across the wet garden.",
    "Fresh bread smells best on a cold winter morning.",
    "She tied the rope around the thick oak branch.",
    "A quiet hum came from the old radio by the stove.",
    "Put the blue cups back on the top shelf, please.",
    "The judge gave the young boxer a fair warning.",
    "Thin sheets of ice covered the pond near the barn.",
    "We watched the ship drift slowly toward the harbour.",
    "His voice shook as he read the final page aloud.",
    "The cat jumped over the fence and vanished from view.",
    "Bright yellow paint peeled from the garage door.",
    "Mix the flour with milk until the paste is smooth.",
    "The thief grabbed the purse and ran down the alley.",
    "A gust of wind blew the map out of my hands.",
    "They played chess beneath the shade of a pine tree.",
    "The pupils measured the length of the hallway twice.",
    "Heavy boots leave deep prints in the soft mud.",
    "Our neighbour keeps three goats and a noisy goose.",
    "The child drew a purple fish with a crayon.",
    "Both of the judges praised the zesty lemon sauce.",
    "The mechanic fixed the valve with a bent wrench.",
    "Please throw the old magazines into the green bin.",
    "A pale moon rose above the jagged mountain ridge.",
    "He hung his wet jacket on the hook by the door.",
    "The choir sang a cheerful tune at the village fair.",
    "Smooth pebbles lined the bottom of the clear stream.",
    "I found a silver coin under the loose floorboard.",
    "The baker wrapped each warm loaf in brown paper.",
    "Wipe the dusty shelves before you stack the books.",
    "The pilot checked the gauges before the long flight.",
    "A thick fog rolled in from the grey sea at dawn.",
    "The twins argued about whose turn it was to cook.",
    "Those shoes pinch my toes when I walk too far.",
    "The farmer sold ripe peaches at the Sunday market.",
    "Sharp thorns scratched my arm as I picked berries.",
    "Her laugh echoed through the empty concert hall.",
    "The puppy chewed a hole in the new leather glove.",
    "Glue the torn edges and press them flat overnight.",
    "Each worker earned a bonus for the extra shift.",
    "The kettle whistled just as the phone began to ring.",
    "We hiked along the cliff until the path ended.",
    "A small boat bobbed on the waves near the pier.",
    "The vase fell off the table and cracked in two.",
    "Join the queue and wait for your number to be called.",
    "Dry leaves crunch underfoot in the autumn woods.",
    "The teacher wrote the answer on the chalkboard.",
    "Steam rose from the bowl of thick vegetable soup.",
    "Five boys climbed the hill to watch the sunrise.",
    "The lazy river wound past fields of golden wheat.",
    "Keep the matches away from the edge of the oven.",
    "My uncle repairs clocks in a shop near the station.",
    "The vote was close, but the motion finally passed.",
    "A loud thud woke the whole house at midnight.",
    "She poured hot cocoa into two chipped mugs.",
    "The hikers shared a bag of salted peanuts.",
    "Clean the brushes before the paint dries on them.",
    "The frog leapt from the lily pad into the pool.",
    "That bridge was built by hand over forty years.",
    "Lock the gate so the sheep cannot wander away.",
    "The museum displayed a huge whale skeleton.",
    "Measure twice and cut the plank only once.",
    "His bike has a squeaky chain and a flat tyre.",
    "The orchestra tuned up while the crowd found seats.",
    "Warm sunlight poured through the dusty window.",
    "A jar of honey sat beside the basket of plums.",
    "They shovelled the snow off the narrow driveway.",
    "The nurse checked his pulse every hour that night.",
    "Bring a torch in case the power goes out again.",
    "The ducks quacked loudly when we tossed them bread.",
    "Our team lost the match by a single point.",
    "The old sailor told stories of distant islands.",
    "Fold the towels and place them in the cupboard.",
    "The treasure map showed a cross beside a palm tree.",
    "Quick thinking saved the boy from a nasty fall.",
    "The owl hooted softly from the branch above us.",
    "Pack a spare pair of socks for the camping trip.",
    "The chef sliced onions with a gleaming knife.",
    "Rain drummed on the tin roof all afternoon.",
    "A zebra grazed calmly beside the watering hole.",
    "The key was hidden beneath a flower pot.",
    "Wash your hands before you touch the dough.",
    "The volcano puffed ash into the morning sky.",
    "He whistled a jolly tune while he mowed the lawn.",
    "The fox slipped through a gap in the hedge.",
    "Count the change carefully before you leave.",
    "The shy girl smiled when she won the prize.",
    "Rows of corn swayed gently in the summer breeze.",
    "The engine coughed twice and then refused to start.",
    "Bees buzzed around the purple clover in the field.",
    "A crisp apple is a fine snack for the journey.",
    "Why did the lamp flicker during the storm?",
    "How far is the nearest village from here?",
    "Who left the muddy boots on the kitchen floor?",
    "Is the water warm enough for a swim today?",
    "Could you pass the pepper and the salt, please?",
    "Where should we hang the portrait of grandfather?",
    "The thunder rumbled, yet the baby slept soundly.",
    "Yesterday the postman brought a parcel from Japan.",
    "Eight pairs of gloves were lost at the ice rink.",
    "The ugly moth flew straight into the lantern.",
)

# Template slots: {S} subject, {V} past verb, {O} object, {P} place, {T} time, {A} adjective,
# {N} plural noun, {Q} adverb. Lists mix front/back/rounded vowels and all consonant places.
SUBJECTS = (
    "the old farmer", "my brother", "a tall woman", "the young pilot", "our teacher",
    "the busy chef", "a tired soldier", "the quiet baker", "her cousin", "the nervous student",
    "a friendly doctor", "the grumpy judge", "my neighbour", "the smiling nurse", "a lonely sailor",
    "the little girl", "his father", "the clever fox", "a brave knight", "the shop keeper",
    "the mayor", "a careful driver", "the poet", "our guide", "the fisherman", "a thief",
    "the twins", "the gardener", "my aunt", "the captain",
)  # fmt: skip
VERBS = (
    "painted", "carried", "borrowed", "dropped", "polished", "hid", "fixed", "bought", "sold",
    "found", "washed", "chose", "weighed", "measured", "wrapped", "buried", "counted", "checked",
    "grabbed", "shared", "lifted", "pushed", "pulled", "stacked", "repaired", "opened", "closed",
    "mended", "tossed", "moved",
)  # fmt: skip
OBJECTS = (
    "a wooden chair", "the rusty bucket", "six ripe pears", "a heavy box", "the broken clock",
    "a basket of eggs", "the leather bag", "a jar of jam", "the golden key", "two thick books",
    "a pile of logs", "the fishing net", "a bowl of soup", "the velvet curtain", "a small puppy",
    "the shiny coins", "a bunch of grapes", "the copper pot", "a pair of boots", "the torn map",
    "a bright lamp", "the muddy shovel", "a cup of tea", "the violin", "a loaf of bread",
    "the zinc tub", "a woollen scarf", "the wicker chair", "a huge pumpkin", "the bicycle",
)  # fmt: skip
PLACES = (
    "near the river", "in the kitchen", "behind the barn", "at the station", "under the bridge",
    "by the window", "in the garden", "on the hill", "at the market", "beside the fence",
    "in the attic", "along the beach", "inside the shed", "across the street", "by the pond",
    "at the harbour", "in the cellar", "on the roof", "near the church", "outside the school",
)  # fmt: skip
TIMES = (
    "before dawn", "at noon", "last night", "on Monday", "after supper", "in the spring",
    "this morning", "every week", "during the storm", "at sunset", "yesterday", "in July",
    "after the game", "before lunch", "at midnight", "on Friday evening",
)  # fmt: skip
ADJECTIVES = (
    "cheap", "huge", "purple", "smooth", "rough", "quiet", "bright", "dusty", "shiny", "broken",
    "fresh", "warm", "yellow", "thin", "heavy", "gloomy", "crisp", "zany", "vivid", "pale",
)  # fmt: skip
NOUNS = (
    "apples", "boxes", "candles", "dishes", "feathers", "gloves", "hammers", "jackets", "kettles",
    "lemons", "marbles", "needles", "oysters", "pebbles", "quilts", "ribbons", "shoes", "tulips",
    "umbrellas", "violins", "wagons", "zippers", "thimbles", "chairs", "mushrooms", "baskets",
)  # fmt: skip
ADVERBS = (
    "slowly", "quickly", "carefully", "gently", "proudly", "quietly", "bravely", "happily",
    "loudly", "patiently", "suddenly", "eagerly",
)  # fmt: skip

TEMPLATES = (
    "{S} {V} {O} {P} {T}.",
    "{T}, {S} {Q} {V} {O} {P}.",
    "{S} {V} {O} and {V2} {O2}.",
    "Why has {S} {V} {O} {P}?",
    "{S} {Q} {V} the {A} {N} {P}.",
    "The {A} {N} were {V} {P} {T}.",
    "{S} said that {S2} {V} {O} {T}.",
    "Did {S} really put the {A} {N} {P}?",
    "Nobody knew that {S} {V} {O}.",
    "{O} was {V} {P} by {S}.",
    "{S} and {S2} {Q} {V} {O}.",
    "If {S} {V} {O}, the {A} {N} stay {P}.",
)


def _pick(rng: np.random.Generator, items: tuple[str, ...]) -> str:
    return items[int(rng.integers(len(items)))]


def generate_sentence(rng: np.random.Generator) -> str:
    """One sentence from a random template, capitalised, filled from the word lists."""
    template = _pick(rng, TEMPLATES)
    fill = {
        "S": _pick(rng, SUBJECTS), "S2": _pick(rng, SUBJECTS), "V": _pick(rng, VERBS),
        "V2": _pick(rng, VERBS), "O": _pick(rng, OBJECTS), "O2": _pick(rng, OBJECTS),
        "P": _pick(rng, PLACES), "T": _pick(rng, TIMES), "A": _pick(rng, ADJECTIVES),
        "N": _pick(rng, NOUNS), "Q": _pick(rng, ADVERBS),
    }  # fmt: skip
    text = template.format(**fill)
    return text[0].upper() + text[1:]


def pick_sentence(rng: np.random.Generator, p_fixed: float = 0.3) -> str:
    """A fixed sentence with probability ``p_fixed``, otherwise a generated one."""
    if rng.random() < p_fixed:
        return _pick(rng, SENTENCES)
    return generate_sentence(rng)
