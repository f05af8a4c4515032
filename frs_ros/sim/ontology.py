"""Household object ontology of the simulated world.

Every category carries what the renderer needs (a primitive ``shape`` and extent ratios),
what attribute queries need (allowed colours and materials, a size range [m]), and what
implicit queries need (``affordances``: short phrases such as ``"holds hot drinks"``, whose
clauses are in ``AFFORDANCES``). The table is a literal, so the ontology is deterministic.

Held-out policy: categories with ``held_out=True`` never appear in ``train``/``val`` scenes;
they appear only in ``test`` scenes, so generalisation to unseen object names can be measured.
Held-out query templates are declared in ``frs_ros.sim.queries``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Colour words -> linear-ish sRGB in [0, 1]; the renderer shades these.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.10, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.95, 0.85, 0.15),
    "green": (0.15, 0.62, 0.20),
    "blue": (0.12, 0.30, 0.85),
    "purple": (0.50, 0.20, 0.65),
    "pink": (0.95, 0.55, 0.70),
    "brown": (0.45, 0.28, 0.12),
    "black": (0.08, 0.08, 0.09),
    "white": (0.93, 0.93, 0.91),
    "grey": (0.50, 0.50, 0.52),
    "silver": (0.75, 0.76, 0.79),
    "gold": (0.85, 0.68, 0.20),
    "beige": (0.87, 0.78, 0.60),
    "teal": (0.10, 0.55, 0.55),
}

# Material -> (texture kind, texture strength); the renderer uses it to modulate albedo so
# that surfaces are not flat (wood grain, fabric weave, metal sheen, ...).
MATERIALS: dict[str, tuple[str, float]] = {
    "ceramic": ("smooth", 0.04),
    "glass": ("sheen", 0.18),
    "plastic": ("smooth", 0.05),
    "metal": ("sheen", 0.22),
    "wood": ("grain", 0.25),
    "fabric": ("weave", 0.18),
    "paper": ("speckle", 0.08),
    "cardboard": ("speckle", 0.14),
    "leather": ("speckle", 0.12),
    "rubber": ("smooth", 0.03),
    "stone": ("speckle", 0.22),
    "organic": ("speckle", 0.10),
    "wax": ("smooth", 0.06),
}

# Affordance phrase -> (clause usable after "something that ...", a need that motivates it).
AFFORDANCES: dict[str, tuple[str, str]] = {
    "holds hot drinks": ("could hold a hot drink", "I want to pour myself some hot tea"),
    "holds cold drinks": ("could hold a cold drink", "I'd like a glass of cold water"),
    "pours liquid": ("can pour liquid", "I need to pour some water into a pot"),
    "holds liquid": ("can store a liquid", "I need somewhere to keep some juice"),
    "cuts food": ("can cut food", "I want to slice some bread"),
    "eats with": ("can be used to eat with", "My soup is getting cold and I have nothing to eat it with"),
    "serves food": ("can be used to serve food", "I need to put the salad out for guests"),
    "stores food": ("can be used to store food", "I have leftovers to store"),
    "cooks food": ("can be used to cook food", "I want to fry an egg"),
    "boils water": ("can boil water", "I need boiling water for pasta"),
    "heats food": ("can heat food", "My lunch is cold"),
    "toasts bread": ("can toast bread", "I want crispy toast for breakfast"),
    "writes": ("can be used to write", "I need to jot down a phone number"),
    "cuts paper": ("can cut paper", "I have to cut this sheet of paper in half"),
    "binds papers": ("can hold papers together", "These loose pages keep falling apart"),
    "reads": ("can be read", "I'm bored and want something to read"),
    "computes": ("can run programs", "I need to answer my e-mails"),
    "makes calls": ("can make a phone call", "I have to call my mother"),
    "types": ("can be typed on", "I want to type a document"),
    "gives light": ("can give light", "It is getting dark in here"),
    "tells time": ("can tell the time", "I don't know if I'm late"),
    "holds flowers": ("can hold flowers", "Someone gave me a bouquet of roses"),
    "decorates": ("is mainly decorative", "I'm looking for a decoration to move"),
    "can be sat on": ("can be sat on", "My legs are tired"),
    "can be slept on": ("can be slept on", "I want to take a nap"),
    "stores things": ("can store things", "I need to tidy these small items away"),
    "carries things": ("can carry things around", "I have to bring several things to the car"),
    "can be played with": ("can be played with", "The kids are bored"),
    "can be thrown": ("can be thrown", "I want to play catch"),
    "cleans": ("can be used for cleaning", "There is a sticky spill on the counter"),
    "dries": ("can dry things", "My hands are wet"),
    "drives nails": ("can drive a nail", "I want to hang a picture on the wall"),
    "turns screws": ("can turn a screw", "This loose screw needs tightening"),
    "makes holes": ("can drill a hole", "I need a hole in this plank"),
    "waters plants": ("can water plants", "The plants look dry"),
    "plays music": ("can play music", "It's too quiet in here"),
    "can be eaten": ("can be eaten", "I'm hungry and want a snack"),
    "holds trash": ("can hold rubbish", "I need to throw away this wrapper"),
    "brushes teeth": ("can brush teeth", "I just woke up and need to freshen my breath"),
    "displays pictures": ("can display a photo", "I want to show off this holiday photo"),
    "controls tv": ("can change the TV channel", "This programme is boring"),
    "keeps drinks hot": ("can keep a drink hot for hours", "I'm taking coffee on a long hike"),
    "blends food": ("can blend food", "I want to make a smoothie"),
    "measures": ("can measure length", "I want to know how wide this shelf is"),
    "protects from rain": ("can protect me from rain", "It's pouring outside"),
    "carries on back": ("can be carried on my back", "I'm packing for a day hike"),
    "weighs down paper": ("is heavy enough to hold papers down", "The wind keeps blowing my notes away"),
    "sticks things": ("can stick things together", "This torn page needs repairing"),
    "points and clicks": ("can move a cursor", "I need to click a button on the screen"),
    "listens privately": ("lets me listen without disturbing others", "My roommate is asleep"),
    "grows": ("is alive and grows", "I want to put something living on the windowsill"),
    "scents the room": ("can make the room smell nice", "The room smells stale"),
    "seasons food": ("can season food", "My soup tastes bland"),
    "marks hazards": ("can mark off a hazard", "The floor is wet and someone might slip"),
}


@dataclass(frozen=True)
class Category:
    """One object category.

    name: canonical name (singular noun phrase); synonyms: other names for it.
    supercategory: coarse group ('kitchenware', 'furniture', ...).
    shape: renderer primitive key (see ``frs_ros.sim.render.build_primitives``).
    size_range_m: (min, max) [m] of the largest extent.
    extent: (x, y, z) extent ratios (largest = 1); z is up.
    colors, materials: attribute words allowed for this category (keys of COLORS, MATERIALS).
    affordances: keys of AFFORDANCES.
    plural: plural form; held_out: only in the ``test`` split.
    """

    name: str
    supercategory: str
    shape: str
    size_range_m: tuple[float, float]
    extent: tuple[float, float, float]
    colors: tuple[str, ...]
    materials: tuple[str, ...]
    affordances: tuple[str, ...]
    synonyms: tuple[str, ...] = ()
    plural: str = ""
    held_out: bool = False

    @property
    def plural_name(self) -> str:
        if self.plural:
            return self.plural
        if self.name.endswith(("s", "sh", "ch", "x")):
            return self.name + "es"
        return self.name + "s"

    @property
    def small(self) -> bool:
        """Fits on a table top (largest extent below 0.5 m)."""
        return self.size_range_m[1] <= 0.5


def _c(name, sup, shape, size, ext, colors, materials, aff, syn=(), plural="", held_out=False) -> Category:
    return Category(
        name=name,
        supercategory=sup,
        shape=shape,
        size_range_m=tuple(size),
        extent=tuple(ext),
        colors=tuple(colors.split()),
        materials=tuple(materials.split()),
        affordances=tuple(aff),
        synonyms=tuple(syn),
        plural=plural,
        held_out=held_out,
    )


_BRIGHT = "red orange yellow green blue purple pink white black teal"

_TABLE: tuple[Category, ...] = (
    # --- kitchenware ---------------------------------------------------------------------
    _c("mug", "kitchenware", "mug", (0.09, 0.13), (0.8, 0.8, 1.0), _BRIGHT, "ceramic plastic",
       ["holds hot drinks"], ["coffee mug", "tea mug"]),
    _c("cup", "kitchenware", "cup", (0.07, 0.11), (0.8, 0.8, 1.0), _BRIGHT, "plastic paper",
       ["holds cold drinks"], ["beaker"]),
    _c("drinking glass", "kitchenware", "cup", (0.09, 0.15), (0.6, 0.6, 1.0), "white blue green teal", "glass",
       ["holds cold drinks"], ["tumbler"], plural="drinking glasses"),
    _c("wine glass", "kitchenware", "wine_glass", (0.15, 0.22), (0.45, 0.45, 1.0), "white", "glass",
       ["holds cold drinks"], ["goblet"], plural="wine glasses", held_out=True),
    _c("bowl", "kitchenware", "bowl", (0.12, 0.22), (1.0, 1.0, 0.45), _BRIGHT, "ceramic plastic wood",
       ["eats with", "serves food", "stores food"], ["cereal bowl"]),
    _c("plate", "kitchenware", "plate", (0.18, 0.28), (1.0, 1.0, 0.08), "white blue green beige black", "ceramic plastic",
       ["serves food"], ["dinner plate"]),
    _c("teapot", "kitchenware", "teapot", (0.16, 0.25), (1.0, 0.7, 0.8), "white blue red black green", "ceramic metal",
       ["pours liquid", "holds liquid"], ["tea pot"], held_out=True),
    _c("kettle", "kitchenware", "kettle", (0.2, 0.28), (0.8, 0.7, 1.0), "silver black white red", "metal plastic",
       ["boils water", "pours liquid"], ["electric kettle"]),
    _c("water bottle", "kitchenware", "bottle", (0.2, 0.3), (0.3, 0.3, 1.0), _BRIGHT + " silver", "plastic metal",
       ["holds cold drinks", "holds liquid"], ["bottle"]),
    _c("jar", "kitchenware", "jar", (0.1, 0.18), (0.75, 0.75, 1.0), "white green blue", "glass",
       ["stores food"], ["mason jar"]),
    _c("soda can", "kitchenware", "cylinder", (0.11, 0.13), (0.55, 0.55, 1.0), "red blue green silver orange", "metal",
       ["holds cold drinks"], ["can", "tin can"]),
    _c("cooking pot", "kitchenware", "pot", (0.2, 0.32), (1.0, 1.0, 0.65), "silver black red", "metal",
       ["cooks food", "boils water"], ["saucepan", "pot"]),
    _c("frying pan", "kitchenware", "pan", (0.35, 0.5), (1.0, 0.55, 0.12), "black silver", "metal",
       ["cooks food"], ["skillet"]),
    _c("knife", "kitchenware", "knife", (0.18, 0.3), (1.0, 0.12, 0.08), "silver black", "metal",
       ["cuts food"], ["kitchen knife"], plural="knives"),
    _c("fork", "kitchenware", "knife", (0.17, 0.21), (1.0, 0.15, 0.07), "silver", "metal",
       ["eats with"], []),
    _c("spoon", "kitchenware", "spoon", (0.15, 0.2), (1.0, 0.22, 0.1), "silver", "metal wood",
       ["eats with"], ["soup spoon"]),
    _c("cutting board", "kitchenware", "box", (0.3, 0.45), (1.0, 0.65, 0.06), "brown beige white", "wood plastic",
       ["serves food"], ["chopping board"]),
    _c("toaster", "appliance", "box", (0.25, 0.32), (1.0, 0.6, 0.75), "silver black red white", "metal plastic",
       ["toasts bread", "heats food"], []),
    _c("blender", "appliance", "blender", (0.3, 0.42), (0.45, 0.45, 1.0), "black white red silver", "plastic glass",
       ["blends food"], ["mixer"]),
    _c("microwave", "appliance", "box", (0.45, 0.55), (1.0, 0.7, 0.6), "white black silver", "metal",
       ["heats food"], ["microwave oven"]),
    _c("pitcher", "kitchenware", "pitcher", (0.2, 0.28), (0.7, 0.6, 1.0), "white blue green", "glass ceramic plastic",
       ["pours liquid", "holds liquid"], ["jug"]),
    _c("thermos", "kitchenware", "bottle", (0.22, 0.32), (0.3, 0.3, 1.0), "silver black red green blue", "metal",
       ["keeps drinks hot", "holds hot drinks"], ["vacuum flask", "flask"], held_out=True),
    _c("salt shaker", "kitchenware", "cylinder", (0.07, 0.11), (0.5, 0.5, 1.0), "white silver", "glass metal",
       ["seasons food"], ["shaker"]),
    _c("tray", "kitchenware", "box", (0.35, 0.5), (1.0, 0.7, 0.05), "brown black silver white", "wood metal plastic",
       ["carries things", "serves food"], ["serving tray"]),
    # --- food ------------------------------------------------------------------------------
    _c("apple", "food", "ellipsoid", (0.07, 0.09), (1.0, 1.0, 0.9), "red green yellow", "organic",
       ["can be eaten"], []),
    _c("orange", "food", "ellipsoid", (0.07, 0.09), (1.0, 1.0, 0.95), "orange", "organic",
       ["can be eaten"], ["mandarin"]),
    _c("banana", "food", "ellipsoid", (0.17, 0.22), (1.0, 0.22, 0.2), "yellow green", "organic",
       ["can be eaten"], []),
    _c("lemon", "food", "ellipsoid", (0.07, 0.09), (1.0, 0.75, 0.75), "yellow", "organic",
       ["can be eaten"], [], held_out=True),
    _c("bread loaf", "food", "ellipsoid", (0.25, 0.35), (1.0, 0.45, 0.4), "brown beige", "organic",
       ["can be eaten"], ["loaf", "bread"]),
    _c("carrot", "food", "carrot", (0.15, 0.22), (1.0, 0.18, 0.18), "orange", "organic",
       ["can be eaten"], []),
    _c("watermelon", "food", "ellipsoid", (0.25, 0.35), (1.0, 0.8, 0.8), "green", "organic",
       ["can be eaten"], ["melon"]),
    # --- office / stationery ---------------------------------------------------------------
    _c("book", "stationery", "box", (0.18, 0.28), (0.75, 1.0, 0.15), _BRIGHT + " brown", "paper",
       ["reads"], ["novel"]),
    _c("notebook", "stationery", "box", (0.15, 0.25), (0.7, 1.0, 0.06), _BRIGHT, "paper",
       ["writes"], ["notepad"]),
    _c("pen", "stationery", "pen", (0.13, 0.15), (1.0, 0.08, 0.08), "blue black red green", "plastic metal",
       ["writes"], ["ballpoint pen"]),
    _c("pencil", "stationery", "pen", (0.15, 0.19), (1.0, 0.06, 0.06), "yellow green red", "wood",
       ["writes"], []),
    _c("scissors", "stationery", "scissors", (0.15, 0.22), (1.0, 0.45, 0.06), "red blue black orange", "metal",
       ["cuts paper"], ["shears"], plural="pairs of scissors"),
    _c("stapler", "stationery", "box", (0.13, 0.2), (1.0, 0.3, 0.35), "black red grey blue", "metal plastic",
       ["binds papers"], []),
    _c("tape dispenser", "stationery", "box", (0.1, 0.16), (1.0, 0.45, 0.55), "black grey blue", "plastic",
       ["sticks things"], ["tape"], held_out=True),
    _c("paperweight", "stationery", "ellipsoid", (0.07, 0.1), (1.0, 1.0, 0.6), "teal blue green purple", "glass stone",
       ["weighs down paper", "decorates"], []),
    _c("ruler", "stationery", "box", (0.25, 0.32), (1.0, 0.12, 0.02), "white yellow silver", "plastic wood metal",
       ["measures"], []),
    # --- electronics -------------------------------------------------------------------------
    _c("laptop", "electronics", "laptop", (0.3, 0.38), (1.0, 0.7, 0.65), "silver black grey", "metal plastic",
       ["computes", "types"], ["notebook computer"]),
    _c("keyboard", "electronics", "box", (0.35, 0.45), (1.0, 0.33, 0.06), "black white grey", "plastic",
       ["types"], ["computer keyboard"]),
    _c("computer mouse", "electronics", "ellipsoid", (0.09, 0.12), (1.0, 0.6, 0.35), "black white grey", "plastic",
       ["points and clicks"], ["mouse"], plural="computer mice"),
    _c("monitor", "electronics", "monitor", (0.45, 0.65), (1.0, 0.25, 0.7), "black silver", "plastic",
       ["displays pictures"], ["screen", "display"]),
    _c("phone", "electronics", "box", (0.13, 0.16), (0.5, 1.0, 0.06), "black white silver blue", "glass plastic",
       ["makes calls"], ["smartphone", "mobile phone"]),
    _c("remote control", "electronics", "box", (0.15, 0.2), (0.3, 1.0, 0.12), "black grey", "plastic",
       ["controls tv"], ["remote", "tv remote"]),
    _c("speaker", "electronics", "box", (0.15, 0.3), (0.7, 0.7, 1.0), "black white grey", "plastic wood",
       ["plays music"], ["loudspeaker"]),
    _c("headphones", "electronics", "headphones", (0.16, 0.2), (1.0, 0.45, 1.0), "black white red blue", "plastic",
       ["listens privately", "plays music"], ["headset"], plural="pairs of headphones", held_out=True),
    _c("alarm clock", "electronics", "clock", (0.1, 0.16), (1.0, 0.5, 1.0), "white black red blue", "plastic metal",
       ["tells time"], ["clock"]),
    _c("flashlight", "electronics", "flashlight", (0.15, 0.25), (1.0, 0.25, 0.25), "black red yellow silver", "metal plastic",
       ["gives light"], ["torch"]),
    # --- decor / household -------------------------------------------------------------------
    _c("table lamp", "lighting", "lamp", (0.35, 0.55), (0.6, 0.6, 1.0), "white beige black yellow", "fabric metal",
       ["gives light"], ["lamp", "desk lamp"]),
    _c("floor lamp", "lighting", "lamp", (1.3, 1.7), (0.3, 0.3, 1.0), "white beige black", "fabric metal",
       ["gives light"], ["standing lamp"]),
    _c("candle", "lighting", "cylinder", (0.1, 0.2), (0.45, 0.45, 1.0), "white red beige purple", "wax",
       ["gives light", "scents the room"], [], held_out=True),
    _c("vase", "decor", "vase", (0.2, 0.4), (0.5, 0.5, 1.0), "white blue green red teal", "glass ceramic",
       ["holds flowers", "decorates"], []),
    _c("potted plant", "decor", "plant", (0.3, 0.7), (0.75, 0.75, 1.0), "green", "organic",
       ["grows", "decorates"], ["plant", "houseplant"]),
    _c("picture frame", "decor", "frame", (0.18, 0.3), (1.0, 0.12, 0.8), "black brown white gold silver", "wood metal",
       ["displays pictures", "decorates"], ["photo frame"]),
    _c("tissue box", "household", "box", (0.2, 0.25), (1.0, 0.55, 0.45), "white blue pink green", "cardboard",
       ["cleans"], ["tissues"], plural="tissue boxes"),
    _c("trash can", "household", "bin", (0.35, 0.6), (0.7, 0.7, 1.0), "grey black white silver", "metal plastic",
       ["holds trash"], ["bin", "waste basket", "garbage can"]),
    _c("basket", "household", "bowl", (0.3, 0.45), (1.0, 0.8, 0.6), "brown beige", "wood fabric",
       ["stores things", "carries things"], ["wicker basket"]),
    _c("cardboard box", "household", "box", (0.3, 0.5), (1.0, 0.8, 0.7), "brown beige", "cardboard",
       ["stores things", "carries things"], ["box", "carton"], plural="cardboard boxes"),
    _c("backpack", "household", "backpack", (0.4, 0.5), (0.75, 0.45, 1.0), "black blue red green grey", "fabric leather",
       ["carries on back", "carries things"], ["rucksack", "bag"]),
    _c("umbrella", "household", "umbrella", (0.8, 1.0), (0.25, 0.25, 1.0), "black blue red purple", "fabric",
       ["protects from rain"], [], held_out=True),
    _c("towel", "household", "box", (0.3, 0.4), (1.0, 0.7, 0.15), "white blue pink beige teal", "fabric",
       ["dries", "cleans"], ["hand towel"]),
    _c("toothbrush", "bathroom", "pen", (0.17, 0.2), (1.0, 0.08, 0.1), _BRIGHT, "plastic",
       ["brushes teeth"], [], plural="toothbrushes"),
    _c("sponge", "household", "box", (0.09, 0.13), (1.0, 0.65, 0.35), "yellow green blue pink", "plastic",
       ["cleans"], ["scrubber"]),
    _c("spray bottle", "household", "bottle", (0.22, 0.3), (0.4, 0.3, 1.0), "blue white green yellow", "plastic",
       ["cleans"], ["sprayer"]),
    _c("bucket", "household", "bin", (0.25, 0.35), (1.0, 1.0, 0.9), "red blue yellow grey", "plastic metal",
       ["holds liquid", "carries things"], ["pail"]),
    _c("watering can", "household", "watering_can", (0.3, 0.45), (1.0, 0.45, 0.7), "green silver red", "metal plastic",
       ["waters plants", "pours liquid"], []),
    _c("pillow", "household", "ellipsoid", (0.4, 0.6), (1.0, 0.7, 0.28), _BRIGHT + " beige", "fabric",
       ["can be slept on", "decorates"], ["cushion"]),
    # --- furniture ---------------------------------------------------------------------------
    _c("chair", "furniture", "chair", (0.8, 1.0), (0.5, 0.5, 1.0), "brown black white red", "wood plastic metal",
       ["can be sat on"], ["dining chair"]),
    _c("stool", "furniture", "stool", (0.45, 0.7), (0.5, 0.5, 1.0), "brown black white", "wood metal",
       ["can be sat on"], ["bar stool"]),
    _c("armchair", "furniture", "armchair", (0.8, 1.0), (1.0, 0.9, 0.9), "brown grey blue green beige", "fabric leather",
       ["can be sat on", "can be slept on"], ["easy chair"], held_out=True),
    _c("side table", "furniture", "side_table", (0.45, 0.6), (1.0, 1.0, 0.9), "brown white black", "wood",
       ["serves food"], ["end table"]),
    _c("cabinet", "furniture", "box", (0.8, 1.2), (0.8, 0.45, 1.0), "brown white grey", "wood metal",
       ["stores things"], ["cupboard"]),
    _c("laundry basket", "household", "bin", (0.45, 0.6), (1.0, 0.7, 0.8), "white blue grey", "plastic fabric",
       ["stores things", "carries things"], ["hamper"], plural="laundry baskets"),
    # --- toys / sports -----------------------------------------------------------------------
    _c("soccer ball", "toy", "sphere", (0.21, 0.23), (1.0, 1.0, 1.0), "white black", "leather",
       ["can be played with", "can be thrown"], ["football"]),
    _c("tennis ball", "toy", "sphere", (0.065, 0.07), (1.0, 1.0, 1.0), "yellow green", "rubber",
       ["can be played with", "can be thrown"], []),
    _c("teddy bear", "toy", "teddy", (0.25, 0.4), (0.8, 0.55, 1.0), "brown beige white pink", "fabric",
       ["can be played with", "decorates"], ["stuffed animal", "plush toy"]),
    _c("toy car", "toy", "toy_car", (0.1, 0.18), (1.0, 0.5, 0.4), "red blue yellow green", "plastic metal",
       ["can be played with"], ["model car"]),
    _c("rubik's cube", "toy", "box", (0.055, 0.06), (1.0, 1.0, 1.0), "white yellow", "plastic",
       ["can be played with"], ["puzzle cube"], held_out=True),
    _c("traffic cone", "toy", "cone", (0.3, 0.45), (0.6, 0.6, 1.0), "orange", "rubber plastic",
       ["marks hazards"], ["cone"]),
    # --- tools -------------------------------------------------------------------------------
    _c("hammer", "tool", "hammer", (0.28, 0.35), (1.0, 0.35, 0.1), "black red brown", "metal wood",
       ["drives nails"], ["mallet"]),
    _c("screwdriver", "tool", "pen", (0.18, 0.25), (1.0, 0.1, 0.1), "red yellow black", "metal plastic",
       ["turns screws"], []),
    _c("wrench", "tool", "knife", (0.2, 0.3), (1.0, 0.15, 0.04), "silver", "metal",
       ["turns screws"], ["spanner"], held_out=True),
    _c("power drill", "tool", "drill", (0.22, 0.3), (1.0, 0.3, 0.85), "yellow black red green", "plastic",
       ["makes holes", "turns screws"], ["drill"]),
    _c("tape measure", "tool", "box", (0.07, 0.09), (1.0, 0.45, 1.0), "yellow black", "plastic metal",
       ["measures"], ["measuring tape"]),
)

ONTOLOGY: dict[str, Category] = {c.name: c for c in _TABLE}
"""All categories by canonical name (insertion order is stable)."""

_BY_ALIAS: dict[str, Category] = {}
for _cat in _TABLE:
    for _alias in (_cat.name, *_cat.synonyms):
        # First owner of an alias wins ("cone" is a synonym of traffic cone only).
        _BY_ALIAS.setdefault(_alias, _cat)


class UnknownCategoryError(KeyError):
    """A name that is neither a canonical category nor a synonym."""


def get_category(name: str) -> Category:
    """Category by canonical name or synonym (case-insensitive)."""
    key = name.strip().lower()
    if key in ONTOLOGY:
        return ONTOLOGY[key]
    if key in _BY_ALIAS:
        return _BY_ALIAS[key]
    raise UnknownCategoryError(
        f"unknown category {name!r}; see frs_ros.sim.ontology.ONTOLOGY ({len(ONTOLOGY)} names) for valid ones"
    )


def categories_for_split(split: str) -> list[Category]:
    """Categories that may appear in scenes of ``split`` (held-out ones only in 'test')."""
    check_split(split)
    if split == "test":
        return list(_TABLE)
    return [c for c in _TABLE if not c.held_out]


def held_out_categories() -> list[str]:
    return [c.name for c in _TABLE if c.held_out]


def categories_with_affordance(affordance: str) -> list[str]:
    if affordance not in AFFORDANCES:
        raise KeyError(f"unknown affordance {affordance!r}; valid: {sorted(AFFORDANCES)}")
    return [c.name for c in _TABLE if affordance in c.affordances]


SPLITS = ("train", "val", "test")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _validate() -> None:
    # Run at import: a typo in the literal table is a programming error, fail loudly.
    for c in _TABLE:
        for col in c.colors:
            if col not in COLORS:
                raise ValueError(f"category {c.name!r}: unknown colour {col!r}")
        for m in c.materials:
            if m not in MATERIALS:
                raise ValueError(f"category {c.name!r}: unknown material {m!r}")
        for a in c.affordances:
            if a not in AFFORDANCES:
                raise ValueError(f"category {c.name!r}: unknown affordance {a!r}")
        lo, hi = c.size_range_m
        if not (0 < lo <= hi):
            raise ValueError(f"category {c.name!r}: bad size range {c.size_range_m}")
        if abs(max(c.extent) - 1.0) > 1e-9:
            raise ValueError(f"category {c.name!r}: extent ratios must have max 1, got {c.extent}")
    if len(ONTOLOGY) != len(_TABLE):
        raise ValueError("duplicate category names in the ontology table")


_validate()
